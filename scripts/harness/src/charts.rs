//! SVG charts of a workload: throughput, and p99 latency, against clients.
//!
//! Each chart reads by itself: its title names the workload and the
//! measure, the panel on the right holds the legend (beside the plot, never
//! over a point), says what the workload was and, on the heavy chart, what
//! the limit line is and why a point may lie above it. The x axis has a
//! tick at each client count measured and nowhere else, evenly spaced (the
//! counts double); y ticks are written without a useless `.0`.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::Results;
use crate::sweep::Point;

/// One line of a chart: a strategy and its (clients, value) points.
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) points: Vec<(u64, f64)>,
}

/// A horizontal reference line, with its legend text.
pub(crate) struct Limit<'a> {
    pub(crate) value: f64,
    pub(crate) label: &'a str,
}

/// What a chart shows, beyond its lines.
pub(crate) struct Chart<'a> {
    /// The title: workload and measure.
    pub(crate) title: &'a str,
    /// The y axis.
    pub(crate) y_label: &'a str,
    /// Notes for the side panel, one paragraph each (wrapped here).
    pub(crate) notes: &'a [String],
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// The whole picture, and the part of it the plot takes.
const SIZE: (u32, u32) = (900, 460);
const PLOT_WIDTH: u32 = 600;

/// Characters per line of a note in the side panel.
const NOTE_WIDTH: usize = 40;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// A tick value without trailing zeros: `9000`, `2.5`, `0.125`.
pub(crate) fn tick(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// `text` cut into lines of at most `width` characters, at spaces.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// Draws `lines` (and a dashed horizontal `limit`, if any) into `path`.
pub(crate) fn draw(
    path: &Path,
    chart: &Chart<'_>,
    lines: &[Line],
    limit: Option<Limit<'_>>,
) -> anyhow::Result<()> {
    // The client counts measured, in order: each gets an evenly spaced slot.
    let mut clients: Vec<u64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let slot = |c: u64| clients.iter().position(|&x| x == c).unwrap_or(0) as i32;
    let last = clients.len().max(1) as i32 - 1;
    let mut y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if let Some(limit) = &limit {
        y_max = y_max.max(limit.value);
    }
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot_area, panel) = root.split_horizontally(PLOT_WIDTH);
    let mut plot = ChartBuilder::on(&plot_area)
        .caption(chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((0..last).into_segmented(), 0f64..y_max)
        .map_err(err)?;
    let label_of = |value: &SegmentValue<i32>| match value {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| clients.get(i))
            .map_or_else(String::new, u64::to_string),
        SegmentValue::Last => String::new(),
    };
    plot.configure_mesh()
        .x_desc("client threads")
        .y_desc(chart.y_label)
        .x_labels(clients.len())
        .x_label_formatter(&label_of)
        .y_label_formatter(&|v| tick(*v))
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    let at = |c: u64| SegmentValue::CenterOf(slot(c));
    for (line, colour) in lines.iter().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        let points: Vec<(SegmentValue<i32>, f64)> =
            line.points.iter().map(|&(c, v)| (at(c), v)).collect();
        plot.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(err)?;
        plot.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )
        .map_err(err)?;
    }
    if let Some(limit) = &limit {
        let style = BLACK.mix(0.6).stroke_width(1);
        plot.draw_series(DashedLineSeries::new(
            vec![
                (SegmentValue::Exact(0), limit.value),
                (SegmentValue::Last, limit.value),
            ],
            6,
            4,
            style,
        ))
        .map_err(err)?;
    }
    side_panel(&panel, chart, lines, limit.as_ref())?;
    root.present().map_err(err)?;
    Ok(())
}

/// The legend and the notes, right of the plot.
fn side_panel(
    panel: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart<'_>,
    lines: &[Line],
    limit: Option<&Limit<'_>>,
) -> anyhow::Result<()> {
    let text = ("sans-serif", 14).into_font().color(&BLACK);
    let small = ("sans-serif", 12).into_font().color(&BLACK.mix(0.8));
    let mut y = 40;
    for (line, colour) in lines.iter().zip(COLOURS.iter().cycle()) {
        panel
            .draw(&PathElement::new(
                vec![(12, y), (42, y)],
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        panel
            .draw(&Circle::new((27, y), 3, colour.filled()))
            .map_err(err)?;
        panel
            .draw_text(&line.label, &text, (50, y - 8))
            .map_err(err)?;
        y += 22;
    }
    if let Some(limit) = limit {
        let style = BLACK.mix(0.6).stroke_width(1);
        for x in [12, 24, 36] {
            panel
                .draw(&PathElement::new(vec![(x, y), (x + 7, y)], style))
                .map_err(err)?;
        }
        for (i, part) in wrap(limit.label, NOTE_WIDTH - 6).iter().enumerate() {
            if i > 0 {
                y += 17;
            }
            panel.draw_text(part, &text, (50, y - 8)).map_err(err)?;
        }
        y += 22;
    }
    y += 8;
    for note in chart.notes {
        for part in wrap(note, NOTE_WIDTH) {
            panel.draw_text(&part, &small, (12, y)).map_err(err)?;
            y += 15;
        }
        y += 8;
    }
    Ok(())
}

/// The two charts of every workload of `results`: throughput (with the
/// physical limit on the heavy one) and p99 latency, against clients.
pub(crate) fn draw_workloads(out: &Path, results: &Results) -> anyhow::Result<()> {
    let run = format!(
        "{} cores ({}); {}.",
        results.machine.cores,
        results.machine.cpu,
        results.date.as_deref().map_or_else(
            || "see results.md for the run".to_owned(),
            |date| format!("run of {date}")
        )
    );
    for workload in &results.workloads {
        let name = &workload.workload;
        let line = |value: fn(&Point) -> f64| -> Vec<Line> {
            workload
                .strategies
                .iter()
                .map(|s| Line {
                    label: format!("--apply {}", s.strategy),
                    points: s.points.iter().map(|p| (p.clients, value(p))).collect(),
                })
                .collect()
        };
        let heavy = name == "heavy";
        let limit = heavy.then_some(Limit {
            value: results.floors.heavy_physical_limit_rps,
            label: "cores ÷ job time: the most the cores can do if each job \
                    takes as long as the probes timed it",
        });
        let mut notes = vec![format!("Workload: {}.", workload.what), run.clone()];
        if heavy {
            notes.push(format!(
                "The job time behind the line is the median of the heavy job timed through \
                 the server around the points ({:.2} ms). A point lies above the line when \
                 its jobs ran faster than that: the machine's speed drifts during a run, and \
                 the same job has run faster in procs' worker processes than in server \
                 threads. The targets in results.md hold each point to the job's CPU time \
                 during that point instead.",
                results.floors.heavy_job_ms_median
            ));
        }
        draw(
            &out.join(format!("{name}-throughput.svg")),
            &Chart {
                title: &format!("{name}: throughput (higher is better)"),
                y_label: "requests per second",
                notes: &notes,
            },
            &line(|p| p.throughput),
            limit,
        )?;
        draw(
            &out.join(format!("{name}-p99.svg")),
            &Chart {
                title: &format!("{name}: p99 latency (lower is better)"),
                y_label: "p99 latency (ms)",
                notes: &notes[..2],
            },
            &line(|p| p.p99_us / 1000.0),
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks lose their useless zeros, and notes wrap at spaces.
    #[test]
    fn ticks_and_wrapping() {
        assert_eq!(tick(9000.0), "9000");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(0.0), "0");
        assert_eq!(
            wrap("the most the cores can do", 12),
            ["the most the", "cores can do"]
        );
    }
}
