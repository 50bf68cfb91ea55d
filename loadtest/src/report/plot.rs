//! SVG plot of a run: the latency percentile curve (top) and per-second rates (bottom).
//!
//! Only SVG is produced: plotters' bitmap backend needs system font libraries to render text, which
//! this tool does not depend on; a `.png` path is refused with a hint to convert the SVG.
//! Invariants: the plot is derived from the same merged result as the report; an empty run still
//! produces a valid (empty) chart rather than an error.

use super::{Error, Report, Result};
use crate::run::RawResult;
use crate::stats::latency::{Latency, LatencyData};
use plotters::prelude::*;
use std::path::Path;

struct Input<'a> {
    title: String,
    latency: &'a LatencyData,
    latency_label: &'static str,
    rates: Vec<(&'static str, Vec<u64>, RGBColor)>,
    rate_label: &'static str,
    rate_caption: &'static str,
    /// Start and end of the measurement window, in seconds since t0 (empty when there is none).
    marks: Vec<f64>,
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = if x <= 2.0 { 0 } else { (x - 2.0).ceil() as usize };
    format!("{p:.decimals$}%")
}

/// Writes the plot for `report` to `path` (must end in `.svg`).
pub fn write(path: &Path, report: &Report, raw: &RawResult) -> Result<()> {
    let shown = path.display().to_string();
    let err = |message: String| Error::Plot { path: shown.clone(), message };
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg") => {}
        Some("png") => {
            return Err(err(
                "PNG needs system fonts this build does not use; write .svg and convert it (e.g. rsvg-convert)".into(),
            ))
        }
        _ => return Err(err("unsupported extension; use .svg".into())),
    }
    let input = match (&report.pubsub, &report.connect) {
        (Some(p), _) => {
            let mut marks = Vec::new();
            if let Some(w) = raw.window {
                marks.push(w.start_ns.saturating_sub(w.t0_ns) as f64 / 1e9);
                marks.push(w.end_ns.saturating_sub(w.t0_ns) as f64 / 1e9);
            }
            Input {
                title: format!("{} ({}) — qos {}", report.scenario.name, report.scenario.workload.kind_name(), p.qos),
                latency: &raw.latency,
                latency_label: "end-to-end latency (ms)",
                rates: vec![
                    ("published/s", p.published_per_second.clone(), BLUE),
                    ("delivered/s", p.delivered_per_second.clone(), RED),
                ],
                rate_label: "messages per second",
                rate_caption: "throughput over time",
                marks,
            }
        }
        (None, Some(c)) => Input {
            title: format!("{} (connect)", report.scenario.name),
            latency: raw.connect.as_ref().map(|c| &c.latency).unwrap_or(&raw.latency),
            latency_label: "connect latency (ms)",
            rates: vec![("connected/s", c.connected_per_second.clone(), BLUE)],
            rate_label: "connections per second",
            rate_caption: "connections over time",
            marks: Vec::new(),
        },
        (None, None) => return Err(err("nothing to plot".into())),
    };
    draw(path, &input).map_err(err)
}

fn draw(path: &Path, input: &Input<'_>) -> std::result::Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(&input.title, ("sans-serif", 22)).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(390);

    let mut lat = Latency::new().map_err(|x| e(&x))?;
    lat.merge_data(input.latency);
    let decades = ((lat.count().max(1) as f64).log10().ceil() as u32).clamp(2, 5);
    let curve: Vec<(f64, f64)> =
        lat.percentile_curve(decades, 20).into_iter().map(|(x, us)| (x, us as f64 / 1e3)).collect();
    let y_max = curve.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.05;
    let mut chart = ChartBuilder::on(&top)
        .margin(15)
        .margin_right(45)
        .caption("latency by percentile", ("sans-serif", 16))
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..f64::from(decades), 0f64..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(input.latency_label)
        .x_labels(decades as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|x| e(&x))?;
    chart.draw_series(LineSeries::new(curve, BLUE.stroke_width(2))).map_err(|x| e(&x))?;

    let secs = input.rates.iter().map(|r| r.1.len()).max().unwrap_or(0).max(1);
    let r_max = input.rates.iter().flat_map(|r| r.1.iter()).copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(15)
        .caption(input.rate_caption, ("sans-serif", 16))
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..secs as f64, 0f64..r_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(input.rate_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|x| e(&x))?;
    if let [start, end] = input.marks[..] {
        let shade = GREEN.mix(0.12).filled();
        chart
            .draw_series([Rectangle::new([(start, 0.0), (end, r_max)], shade)])
            .map_err(|x| e(&x))?
            .label("measurement window")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade));
    }
    for (label, values, color) in &input.rates {
        let color = *color;
        let points = values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }
}
