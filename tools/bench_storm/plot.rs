//! `--plot FILE.svg`: the first storm of every daemon run, drawn over time on shared axes. Upper chart: the
//! kernel's link notifications per time bin (as the netlink monitor received them). Lower chart: the ports
//! where STATE_DB disagrees with the kernel, per STATE_DB poll (~1 ms apart; the kernel's side replayed
//! from the notifications, see `timeline`); a dashed vertical line marks the moment the benchmark found
//! STATE_DB converged for good.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::plot_page::Page;

/// One daemon's first storm, in unix ns.
pub struct StormTrace {
    pub label: String,
    /// When the storm's first command was applied (the x axis' origin).
    pub start_ns: u64,
    /// (unix ns, link messages) per datagram the netlink monitor received after `start_ns`.
    pub notifications: Vec<(u64, u32)>,
    /// (unix ns, ports where STATE_DB differs from the kernel) per STATE_DB poll.
    pub disagreement: Vec<(u64, u32)>,
    /// When STATE_DB started to equal the kernel's final truth for good.
    pub converged_ns: u64,
}

/// The daemons to run as `(label, command template)`. Without `--plot`: the `--daemon`s given, else
/// portsyncd. With `--plot`: portsyncd first, then every `--daemon` (to compare on the same axes).
pub fn daemons(given: &[String], plot: bool, portsyncd: &str) -> Vec<(String, String)> {
    let mut cmds: Vec<String> = Vec::new();
    if given.is_empty() || plot {
        cmds.push(portsyncd.to_string());
    }
    // `builtin` names the sibling portsyncd (so that it can be compared with others in one run).
    cmds.extend(given.iter().map(|c| {
        if c == "builtin" {
            portsyncd.to_string()
        } else {
            c.clone()
        }
    }));
    let mut out: Vec<(String, String)> = Vec::new();
    for cmd in cmds {
        // The program's name, past `env` and `VAR=value` words.
        let base = cmd
            .split_whitespace()
            .find(|w| *w != "env" && !w.contains('='))
            .and_then(|p| Path::new(p).file_name())
            .map_or_else(
                || "daemon".to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
        let again = format!("{base} #");
        let same = out
            .iter()
            .filter(|(l, _)| *l == base || l.starts_with(&again))
            .count();
        let label = if same == 0 {
            base
        } else {
            format!("{base} #{}", same + 1)
        };
        out.push((label, cmd));
    }
    out
}

/// A bin width of 1, 2 or 5 times a power of ten (ms) that cuts `span_ms` into about 100 bins.
pub fn bin_ms(span_ms: f64) -> f64 {
    let raw = (span_ms / 100.0).max(0.1);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|b| *b >= raw)
        .unwrap_or(10.0 * p)
}

/// Notifications per bin: `n_bins` bins of `bin_ns` from `start_ns`; later events are left out.
pub fn bins(events: &[(u64, u32)], start_ns: u64, bin_ns: u64, n_bins: usize) -> Vec<u32> {
    let mut out = vec![0u32; n_bins];
    for &(t, n) in events {
        if let Some(i) = t
            .checked_sub(start_ns)
            .map(|d| (d / bin_ns.max(1)) as usize)
        {
            if let Some(b) = out.get_mut(i) {
                *b += n;
            }
        }
    }
    out
}

/// A step line through `(x, y)` samples, with only the points where `y` changes (and the last one),
/// so a long flat stretch of ~1 ms polls costs two points in the SVG, not thousands.
pub fn steps(samples: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in samples {
        match out.last() {
            Some(&(_, prev)) if prev == y => {}
            Some(&(_, prev)) => {
                out.push((x, prev));
                out.push((x, y));
            }
            None => out.push((x, y)),
        }
    }
    if let (Some(&(x, y)), Some(last)) = (samples.last(), out.last()) {
        if last.0 != x {
            out.push((x, y));
        }
    }
    out
}

fn ms_since(start_ns: u64, t: u64) -> f64 {
    t.saturating_sub(start_ns) as f64 / 1e6
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Draws every trace on one SVG (two charts sharing the time axis).
pub fn draw_storm(path: &Path, traces: &[StormTrace], title: &str) -> Result<()> {
    // Up to the last notification or convergence (whichever is later) and a third more: the quiet
    // second the benchmark waits for before it calls a run converged is left out.
    let span_ms = traces
        .iter()
        .map(|t| {
            let last = t.notifications.last().map_or(0, |p| p.0);
            ms_since(t.start_ns, t.converged_ns.max(last))
        })
        .fold(1.0f64, f64::max)
        * 1.3
        + 5.0;
    let bin = bin_ms(span_ms);
    let n_bins = (span_ms / bin).ceil() as usize + 1;
    let binned: Vec<Vec<u32>> = traces
        .iter()
        .map(|t| bins(&t.notifications, t.start_ns, (bin * 1e6) as u64, n_bins))
        .collect();
    let y_notes = binned.iter().flatten().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let y_diff = traces
        .iter()
        .flat_map(|t| t.disagreement.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;

    let page = Page::new(path, title, 350, "the plot".into())?;
    let err = |e: DrawingAreaErrorKind<std::io::Error>| page.err(e);

    let mut chart = page.chart(
        &page.upper,
        "kernel link notifications",
        0f64..span_ms,
        0f64..y_notes,
        "ms since the storm's first command",
        &format!("RTM_NEWLINK/DELLINK per {bin} ms"),
    )?;
    for (i, (t, b)) in traces.iter().zip(&binned).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let samples: Vec<(f64, f64)> = b
            .iter()
            .enumerate()
            .map(|(k, n)| (k as f64 * bin, f64::from(*n)))
            .collect();
        chart
            .draw_series(LineSeries::new(steps(&samples), color.stroke_width(2)))
            .map_err(err)?
            .label(format!(
                "{}: {} notifications",
                t.label,
                t.notifications.iter().map(|e| u64::from(e.1)).sum::<u64>()
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    page.legend(&mut chart)?;

    let mut chart = page.chart(
        &page.lower,
        "STATE_DB against the kernel, per poll of STATE_DB",
        0f64..span_ms,
        0f64..y_diff,
        "ms since the storm's first command",
        "ports where STATE_DB differs",
    )?;
    for (i, t) in traces.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let samples: Vec<(f64, f64)> = t
            .disagreement
            .iter()
            .map(|&(ns, n)| (ms_since(t.start_ns, ns), f64::from(n)))
            .filter(|p| p.0 <= span_ms)
            .collect();
        let conv = ms_since(t.start_ns, t.converged_ns);
        chart
            .draw_series(LineSeries::new(steps(&samples), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{}: converged at {conv:.0} ms", t.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(DashedLineSeries::new(
                [(conv, 0.0), (conv, y_diff)],
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(err)?;
    }
    page.legend(&mut chart)?;
    page.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_put_portsyncd_first_when_plotting() {
        let given = vec![
            "/opt/a/portsyncd --x".to_string(),
            "/usr/bin/cpp-psd".into(),
        ];
        let d = daemons(&given, true, "/t/portsyncd --redis-url {url}");
        let labels: Vec<&str> = d.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["portsyncd", "portsyncd #2", "cpp-psd"]);
        assert_eq!(d[0].1, "/t/portsyncd --redis-url {url}");
        // Without --plot a --daemon replaces portsyncd, as before.
        assert_eq!(daemons(&given[1..], false, "/t/portsyncd").len(), 1);
        assert_eq!(daemons(&[], false, "/t/portsyncd")[0].0, "portsyncd");
    }

    #[test]
    fn builtin_names_portsyncd_and_labels_skip_env_and_tell_copies_apart() {
        let given = vec![
            "env RUST_LOG=debug /tmp/portsyncd.old --x".to_string(),
            "builtin".into(),
            "/tmp/portsyncd.old --y".into(),
        ];
        let d = daemons(&given, false, "/t/portsyncd --redis-url {url}");
        let labels: Vec<&str> = d.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["portsyncd.old", "portsyncd", "portsyncd.old #2"]);
        assert_eq!(d[1].1, "/t/portsyncd --redis-url {url}");
    }

    #[test]
    fn bin_widths_are_round() {
        assert_eq!(bin_ms(1000.0), 10.0);
        assert_eq!(bin_ms(1500.0), 20.0);
        assert_eq!(bin_ms(3000.0), 50.0);
        assert_eq!(bin_ms(80.0), 1.0);
    }

    #[test]
    fn bins_sum_events_and_drop_outsiders() {
        let ev = [(5, 1), (100, 2), (109, 3), (110, 4), (10_000, 9), (1, 7)];
        // start 10: (1, 7) is before the start, (10_000, 9) after the last bin.
        assert_eq!(bins(&ev, 10, 50, 3), vec![0, 5, 4]);
    }

    #[test]
    fn steps_keep_changes_only() {
        let s = [(0.0, 3.0), (1.0, 3.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0)];
        assert_eq!(
            steps(&s),
            vec![(0.0, 3.0), (2.0, 3.0), (2.0, 1.0), (4.0, 1.0)]
        );
        assert!(steps(&[]).is_empty());
    }
}
