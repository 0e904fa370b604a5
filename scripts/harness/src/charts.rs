//! SVG charts of a workload: throughput, and p99 latency, against clients.

use std::path::Path;

use plotters::prelude::*;

use crate::results::Results;
use crate::sweep::Point;

/// One line of a chart: a strategy and its (clients, value) points.
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `lines` (and a dashed horizontal `limit`, if any) into `path`.
pub(crate) fn draw(
    path: &Path,
    title: &str,
    y_label: &str,
    lines: &[Line],
    limit: Option<(f64, &str)>,
) -> anyhow::Result<()> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let mut y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if let Some((value, _)) = limit {
        y_max = y_max.max(value);
    }
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..x_max + 0.5, 0f64..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc(y_label)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (line, colour) in lines.iter().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(line.points.clone(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(line.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some((value, label)) = limit {
        let style = BLACK.mix(0.6).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.5, value), (x_max + 0.5, value)],
                6,
                4,
                style,
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label.to_owned())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The two charts of every workload of `results`: throughput (with the
/// physical limit on the heavy one) and p99 latency, against clients.
pub(crate) fn draw_workloads(out: &Path, results: &Results) -> anyhow::Result<()> {
    for workload in &results.workloads {
        let name = &workload.workload;
        let line = |value: fn(&Point) -> f64| -> Vec<Line> {
            workload
                .strategies
                .iter()
                .map(|s| Line {
                    label: s.strategy.clone(),
                    points: s
                        .points
                        .iter()
                        .map(|p| (p.clients as f64, value(p)))
                        .collect(),
                })
                .collect()
        };
        let limit = (name == "heavy").then_some((
            results.floors.heavy_physical_limit_rps,
            "cores ÷ job time (median of the probes)",
        ));
        draw(
            &out.join(format!("{name}-throughput.svg")),
            &format!("{name}: throughput"),
            "requests/s",
            &line(|p| p.throughput),
            limit,
        )?;
        draw(
            &out.join(format!("{name}-p99.svg")),
            &format!("{name}: p99 latency"),
            "p99 (ms)",
            &line(|p| p.p99_us / 1000.0),
            None,
        )?;
    }
    Ok(())
}
