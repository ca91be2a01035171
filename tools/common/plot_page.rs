//! The SVG page that bench-storm's `--plot` and chaos-soak's `--plot` both draw: a title over two
//! charts (1100x760 in all) that share the time axis, each with a caption, axis descriptions and a
//! boxed legend. The series are each tool's own.

use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

pub type Area<'p> = DrawingArea<SVGBackend<'p>, Shift>;
pub type Chart<'a, 'p> =
    ChartContext<'a, SVGBackend<'p>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The page: `root` (titled) to present at the end, `upper` (`upper_px` high) and `lower`.
pub struct Page<'p> {
    pub root: Area<'p>,
    pub upper: Area<'p>,
    pub lower: Area<'p>,
    /// What a drawing error names: "drawing {what}: {error}".
    what: String,
}

impl<'p> Page<'p> {
    pub fn new(path: &'p Path, title: &str, upper_px: u32, what: String) -> Result<Page<'p>> {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {what}: {e}");
        let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| err(&e))?;
        let (upper, lower) = root.split_vertically(upper_px);
        Ok(Page {
            root,
            upper,
            lower,
            what,
        })
    }

    /// A drawing error, named.
    pub fn err(&self, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("drawing {}: {e}", self.what)
    }

    /// A chart on `area` (the page's upper or lower part) with its caption and mesh drawn.
    pub fn chart<'a>(
        &self,
        area: &'a Area<'p>,
        caption: &str,
        x: Range<f64>,
        y: Range<f64>,
        x_desc: &str,
        y_desc: &str,
    ) -> Result<Chart<'a, 'p>> {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)
            .map_err(|e| self.err(e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| self.err(e))?;
        Ok(chart)
    }

    /// The chart's legend, boxed.
    pub fn legend<'a>(&self, chart: &mut Chart<'a, 'p>) -> Result<()>
    where
        'p: 'a,
    {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| self.err(e))
    }

    /// Writes the file.
    pub fn present(&self) -> Result<()> {
        self.root.present().map_err(|e| self.err(e))
    }
}
