//! What a soak measured: convergence times per fault, invariant checks, violations, RSS over time;
//! printed as a table and drawn as an SVG.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::plot_page::Page;

/// One daemon memory sample.
#[derive(Debug, Clone, Copy)]
pub struct RssSample {
    pub at_secs: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Milliseconds from the fault's end to convergence, per fault name.
    pub converge_ms: BTreeMap<&'static str, Vec<f64>>,
    /// (seconds since the start, fault, ms to converge), in order.
    pub episodes: Vec<(f64, &'static str, f64)>,
    /// Invariant checks that passed, per invariant.
    pub passed: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub rss: Vec<RssSample>,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i.min(s.len() - 1)]
}

impl Report {
    pub fn pass(&mut self, invariant: &'static str) {
        *self.passed.entry(invariant).or_default() += 1;
    }

    pub fn converged(&mut self, at_secs: f64, fault: &'static str, ms: f64) {
        self.converge_ms.entry(fault).or_default().push(ms);
        self.episodes.push((at_secs, fault, ms));
    }

    /// Median RSS (MiB) of the samples in the first and the last `frac` of the run, and the highest
    /// VmHWM.
    pub fn rss_drift(&self, frac: f64) -> Option<(f64, f64, f64)> {
        let end = self.rss.last()?.at_secs;
        let mib = |s: &RssSample| s.rss_kib as f64 / 1024.0;
        let first: Vec<f64> = self
            .rss
            .iter()
            .filter(|s| s.at_secs <= end * frac)
            .map(mib)
            .collect();
        let last: Vec<f64> = self
            .rss
            .iter()
            .filter(|s| s.at_secs >= end * (1.0 - frac))
            .map(mib)
            .collect();
        let hwm = self.rss.iter().map(|s| s.hwm_kib).max()? as f64 / 1024.0;
        Some((quantile(&first, 0.5), quantile(&last, 0.5), hwm))
    }

    pub fn print(&self, secs: f64) {
        println!();
        println!(
            "chaos-soak: {} episodes in {:.0} s",
            self.episodes.len(),
            secs
        );
        println!(
            "  {:<22} {:>6} {:>12} {:>12} {:>12}",
            "fault", "count", "median ms", "p99 ms", "max ms"
        );
        let mut all = Vec::new();
        for (f, v) in &self.converge_ms {
            all.extend_from_slice(v);
            println!(
                "  {:<22} {:>6} {:>12.0} {:>12.0} {:>12.0}",
                f,
                v.len(),
                quantile(v, 0.5),
                quantile(v, 0.99),
                quantile(v, 1.0)
            );
        }
        println!(
            "  {:<22} {:>6} {:>12.0} {:>12.0} {:>12.0}",
            "(all)",
            all.len(),
            quantile(&all, 0.5),
            quantile(&all, 0.99),
            quantile(&all, 1.0)
        );
        println!("  invariant checks passed:");
        for (k, n) in &self.passed {
            println!("    {k:<40} {n}");
        }
        if let Some((first, last, hwm)) = self.rss_drift(0.1) {
            println!(
                "  daemon RSS: median {first:.1} MiB in the first tenth of the run, {last:.1} MiB in \
                 the last; highest VmHWM {hwm:.1} MiB ({} samples)",
                self.rss.len()
            );
        }
        println!("  invariant violations: {}", self.violations.len());
        for v in &self.violations {
            println!("    {v}");
        }
    }

    /// Upper chart: the daemon's RSS over time; lower chart: each fault's time to converge.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        let end = self
            .episodes
            .last()
            .map(|e| e.0)
            .unwrap_or(1.0)
            .max(self.rss.last().map(|s| s.at_secs).unwrap_or(1.0))
            .max(1.0);
        let rss_max = self
            .rss
            .iter()
            .map(|s| s.hwm_kib.max(s.rss_kib) as f64 / 1024.0)
            .fold(1.0, f64::max)
            * 1.15;
        let conv_max = self
            .episodes
            .iter()
            .map(|e| e.2 / 1000.0)
            .fold(0.1, f64::max)
            * 1.15;
        let page = Page::new(path, title, 360, path.display().to_string())?;
        let mut chart = page.chart(
            &page.upper,
            "daemon memory at each quiet point",
            0f64..end,
            0f64..rss_max,
            "seconds since the start",
            "MiB",
        )?;
        let series = |f: fn(&RssSample) -> u64| -> Vec<(f64, f64)> {
            self.rss
                .iter()
                .map(|s| (s.at_secs, f(s) as f64 / 1024.0))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(series(|s| s.rss_kib), BLUE.stroke_width(2)))
            .map_err(|e| page.err(e))?
            .label("VmRSS")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(series(|s| s.hwm_kib), RED.stroke_width(1)))
            .map_err(|e| page.err(e))?
            .label("VmHWM (since that daemon's start)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        page.legend(&mut chart)?;

        let mut chart = page.chart(
            &page.lower,
            "time from the end of each fault until Redis equals the kernel",
            0f64..end,
            0f64..conv_max,
            "seconds since the start",
            "seconds to converge",
        )?;
        let names: Vec<&'static str> = self.converge_ms.keys().copied().collect();
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = self
                .episodes
                .iter()
                .filter(|e| e.1 == *name)
                .map(|e| (e.0, e.2 / 1000.0))
                .collect();
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| page.err(e))?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        page.legend(&mut chart)?;
        page.present()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_drift() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
        let mut r = Report::default();
        for (t, kib) in [(0.0, 8192), (50.0, 9000), (100.0, 10240)] {
            r.rss.push(RssSample {
                at_secs: t,
                rss_kib: kib,
                hwm_kib: kib + 1024,
            });
        }
        assert_eq!(r.rss_drift(0.1), Some((8.0, 10.0, 11.0)));
    }
}
