//! `bench-store --plot FILE.svg`: commit latency (p50 and p99) against the port count, one line per
//! kind of commit, on log-log axes.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One run of one kind of commit at one port count.
pub struct Point {
    pub ports: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Reads `commit_p50_ms=` and `commit_p99_ms=` from a child's result line.
pub fn parse(ports: usize, line: &str) -> Option<Point> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(Point {
        ports,
        p50_ms: field("commit_p50_ms=")?,
        p99_ms: field("commit_p99_ms=")?,
    })
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// `series`: (label, points in port order). p50 solid with dots, p99 dashed, same colour.
pub fn draw(path: &Path, title: &str, series: &[(String, Vec<Point>)]) -> Result<()> {
    let all = series.iter().flat_map(|s| &s.1);
    let (mut x_max, mut y_min, mut y_max) = (2usize, f64::MAX, 0f64);
    for p in all {
        x_max = x_max.max(p.ports);
        y_min = y_min.min(p.p50_ms);
        y_max = y_max.max(p.p99_ms);
    }
    let x_min = series
        .iter()
        .flat_map(|s| &s.1)
        .map(|p| p.ports)
        .min()
        .unwrap_or(1);
    let y_min = if y_min == f64::MAX { 0.01 } else { y_min * 0.7 };
    let y_max = (y_max * 1.4).max(y_min * 10.0);

    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_min as f64 * 0.8..x_max as f64 * 1.25).log_scale(),
            (y_min..y_max).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("ports (records in each generation)")
        .y_desc("commit latency, ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.ports as f64, p.p50_ms)).collect();
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.ports as f64, p.p99_ms)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{label}: p50"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(p50.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                p99.clone(),
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{label}: p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 6, y), (x + 10, y), (x + 16, y)], color)
            });
        chart
            .draw_series(p99.iter().map(|&p| Cross::new(p, 4, color.stroke_width(1))))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_result_line() {
        let line =
            "ports=  512 export=true  change=one sled=LowSpace commits=300 commit_p50_ms=0.412 \
                    commit_p99_ms=1.250 commit_max_ms=3.1";
        let p = parse(512, line).unwrap();
        assert_eq!((p.ports, p.p50_ms, p.p99_ms), (512, 0.412, 1.25));
        assert!(parse(1, "ports=1 commit_p50_ms=x").is_none());
    }
}
