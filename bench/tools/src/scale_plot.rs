//! The scale figure: a few panels side by side, each with a log-log chart of
//! one measure (wall time, peak RSS, ...) against the input size `n`, one
//! line per configuration. [`ScaleFigure`] is the input, as the orchestrator
//! writes it; [`render_svg`] draws it.
//!
//! Input (JSON; unknown keys are ignored, the listed ones are required):
//!
//! ```json
//! {"title": "...", "x_label": "functions (N)", "n": [1000, 10000, 50000],
//!  "panels": [{"title": "wall time", "y_label": "seconds",
//!              "series": [{"name": "aotc --log", "values": [0.5, null, 9.1]}]}]}
//! ```
//!
//! `values[i]` belongs to `n[i]`; `null` is a missing point. Both axes are
//! logarithmic, so zeros are skipped like nulls; a line is broken where a
//! point is missing rather than bridged across the gap.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Deserialize;

/// The whole figure.
#[derive(Debug, Clone, Deserialize)]
pub struct ScaleFigure {
    pub title: String,
    pub x_label: String,
    /// The x values shared by every series; all > 0.
    pub n: Vec<f64>,
    pub panels: Vec<Panel>,
}

/// One chart.
#[derive(Debug, Clone, Deserialize)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// One line: a value (or `null`) per entry of `n`.
#[derive(Debug, Clone, Deserialize)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

const PANEL_WIDTH: u32 = 560;
const HEIGHT: u32 = 460;
const FONT: &str = "sans-serif";

impl ScaleFigure {
    /// Reads, parses and validates a figure file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        Self::parse(&text).with_context(|| format!("bad figure input `{}`", path.display()))
    }

    /// Parses and validates figure JSON.
    pub fn parse(text: &str) -> Result<Self> {
        let figure: Self = serde_json::from_str(text).context("invalid JSON")?;
        figure.validate()?;
        Ok(figure)
    }

    /// Checks what the JSON shape cannot: lengths and signs.
    pub fn validate(&self) -> Result<()> {
        if self.n.is_empty() {
            bail!("`n` is empty");
        }
        if let Some(bad) = self.n.iter().find(|n| **n <= 0.0) {
            bail!("`n` holds {bad}, but the x axis is logarithmic: every `n` must be > 0");
        }
        if self.panels.is_empty() {
            bail!("`panels` is empty");
        }
        for panel in &self.panels {
            for series in &panel.series {
                let at = || format!("panel `{}`, series `{}`", panel.title, series.name);
                if series.values.len() != self.n.len() {
                    bail!(
                        "{}: {} values, but `n` has {} entries",
                        at(),
                        series.values.len(),
                        self.n.len()
                    );
                }
                if let Some(bad) = series.values.iter().flatten().find(|v| **v < 0.0) {
                    bail!("{}: negative value {bad}", at());
                }
            }
        }
        Ok(())
    }
}

/// Draws the figure as an SVG document.
pub fn render_svg(figure: &ScaleFigure) -> Result<String> {
    let mut svg = String::new();
    {
        let width = PANEL_WIDTH * figure.panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(&figure.title, (FONT, 22)).map_err(plot_error)?;
        let areas = root.split_evenly((1, figure.panels.len()));
        for (panel, area) in figure.panels.iter().zip(&areas) {
            draw_panel(figure, panel, area)
                .with_context(|| format!("drawing panel `{}`", panel.title))?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_panel(
    figure: &ScaleFigure,
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<()> {
    let (x0, x1) = log_range(figure.n.iter().copied()).unwrap_or((1.0, 10.0));
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (y0, y1) = log_range(ys).unwrap_or((1.0, 10.0));

    let (x_bold, x_light) = log_ticks(x0, x1);
    let (y_bold, y_light) = log_ticks(y0, y1);

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x0..x1)
                .log_scale()
                .with_key_points(x_bold)
                .with_light_points(x_light),
            (y0..y1)
                .log_scale()
                .with_key_points(y_bold)
                .with_light_points(y_light),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(&figure.x_label)
        .y_desc(&panel.y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.05))
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_number(*v))
        .draw()
        .map_err(plot_error)?;

    for (i, series) in panel.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = color.stroke_width(2);
        // An empty series carries the legend entry, so a series with no
        // points at all still appears in the legend.
        chart
            .draw_series(LineSeries::new(Vec::<(f64, f64)>::new(), line))
            .map_err(plot_error)?
            .label(&series.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
        let points: Vec<Option<(f64, f64)>> = figure
            .n
            .iter()
            .zip(&series.values)
            .map(|(&n, v)| v.filter(|v| *v > 0.0).map(|v| (n, v)))
            .collect();
        for run in points.split(Option::is_none) {
            let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
            chart
                .draw_series(LineSeries::new(run.iter().copied(), line))
                .map_err(plot_error)?;
            chart
                .draw_series(run.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The range of the positive values, widened by a margin on the log scale;
/// `None` when there is none.
fn log_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) =
        values
            .filter(|v| *v > 0.0)
            .fold(None, |acc: Option<(f64, f64)>, v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })?;
    // A single value (or all equal) still gets a decade around it.
    let (lo, hi) = if hi / lo < 1.5 {
        (lo / 3.0, hi * 3.0)
    } else {
        (lo, hi)
    };
    Some((lo / 1.3, hi * 1.3))
}

/// Tick marks for a log axis over `lo..hi`: labelled ("bold") ticks at
/// 1, 2 and 5 times a power of ten (only the powers over more than four
/// decades, every digit within one decade), and unlabelled grid lines at
/// every digit times a power of ten.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let with_mantissas = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let every_digit = with_mantissas(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let decades = (hi / lo).log10();
    let bold = match decades {
        d if d > 4.0 => with_mantissas(&[1.0]),
        d if d > 1.0 => with_mantissas(&[1.0, 2.0, 5.0]),
        _ => every_digit.clone(),
    };
    let bold = if bold.len() < 2 {
        every_digit.clone()
    } else {
        bold
    };
    (bold, every_digit)
}

/// At most three significant digits, no trailing zeros: `50000`, `0.25`, `1.5`.
fn format_number(v: f64) -> String {
    if v >= 100.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - v.log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// plotters' errors borrow nothing but are generic over the backend; flatten
/// them to text.
fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "title": "scale", "x_label": "functions (N)", "n": [1000, 10000, 50000],
        "panels": [
            {"title": "wall time", "y_label": "seconds", "series": [
                {"name": "aotc --log", "values": [0.5, 4.0, 21.0]},
                {"name": "replay", "values": [0.1, null, 3.2]}]},
            {"title": "peak RSS", "y_label": "MiB", "series": [
                {"name": "in-process", "values": [120, 900, 0]},
                {"name": "never measured", "values": [null, null, null]}]}]}"#;

    #[test]
    fn renders_every_series_name() {
        let svg = render_svg(&ScaleFigure::parse(SMALL).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in ["aotc --log", "replay", "in-process", "never measured"] {
            assert!(svg.contains(name), "{name} missing");
        }
    }

    #[test]
    fn a_series_of_the_wrong_length_is_refused() {
        let bad = SMALL.replace("[0.5, 4.0, 21.0]", "[0.5, 4.0]");
        let e = format!("{:#}", ScaleFigure::parse(&bad).unwrap_err());
        assert_eq!(
            e,
            "panel `wall time`, series `aotc --log`: 2 values, but `n` has 3 entries"
        );
    }

    #[test]
    fn non_positive_n_is_refused() {
        let bad = SMALL.replace("[1000, 10000, 50000]", "[0, 10000, 50000]");
        let e = format!("{:#}", ScaleFigure::parse(&bad).unwrap_err());
        assert!(e.contains("every `n` must be > 0"), "{e}");
    }

    #[test]
    fn a_missing_key_is_named() {
        let bad = SMALL.replace(r#""y_label": "MiB", "#, "");
        let e = format!("{:#}", ScaleFigure::parse(&bad).unwrap_err());
        assert!(e.contains("missing field `y_label`"), "{e}");
    }

    #[test]
    fn numbers_are_short() {
        let cases = [
            (50000.0, "50000"),
            (100.0, "100"),
            (1.5, "1.5"),
            (0.25, "0.25"),
            (3.0, "3"),
        ];
        for (v, want) in cases {
            assert_eq!(format_number(v), want);
        }
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        let (bold, light) = log_ticks(700.0, 65000.0);
        assert_eq!(bold, [1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0]);
        assert_eq!(light.len(), 3 + 9 + 6);
        let (bold, _) = log_ticks(3.0, 8.5);
        assert_eq!(bold, [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn a_single_value_still_spans_a_range() {
        let (lo, hi) = log_range([5.0].into_iter()).unwrap();
        assert!(lo < 5.0 && hi > 5.0 && hi / lo > 5.0);
        assert_eq!(log_range([0.0].into_iter()), None);
    }
}
