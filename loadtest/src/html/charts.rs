//! The report's charts, drawn by `plotters` into SVG strings that the page
//! inlines: the latency percentile plot, and the timeline (messages per
//! second, latency per second, events per second) with the run's marks as
//! numbered vertical lines.

use plotters::coord::Shift;
use plotters::prelude::*;
use thiserror::Error;

use crate::stats::timeline::{EventKind, SecondData, TimelineData};

/// A chart could not be drawn (a bug of ours or of the plotting crate: the
/// data is always drawable).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChartError {
    /// Us: plotters refused to draw.
    #[error("cannot draw the {chart} chart: {reason}")]
    Draw {
        /// Which chart.
        chart: &'static str,
        /// What plotters said.
        reason: String,
    },
}

const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";
const SENT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RECEIVED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const P50: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const P99: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const MAX: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const MARK: RGBColor = RGBColor(0x70, 0x70, 0x70);
/// The shade of a window between two marks (an upgrade).
const WINDOW: RGBColor = RGBColor(0xff, 0xd7, 0x00);
/// One colour per [`EventKind::ALL`].
const EVENT_COLOURS: [RGBColor; 6] = [
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0x17, 0x17),
];

fn err<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |e| ChartError::Draw {
        chart,
        reason: e.to_string(),
    }
}

/// A duration in µs as people read it: `850 µs`, `12 ms`, `1.5 s`.
pub fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} µs", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// The label of the percentile axis at `x` = −log10(1 − q): 0 → 0 %,
/// 1 → 90 %, 2 → 99 %, 3 → 99.9 %.
pub fn percentile_label(x: f64) -> String {
    if x < 0.5 {
        return "0%".into();
    }
    let digits = (x.round() as usize).saturating_sub(2);
    format!("{:.*}%", digits, 100.0 * (1.0 - 10f64.powf(-x.round())))
}

/// The top of a log axis that holds `max`: the next power of ten.
fn log_top(max: f64) -> f64 {
    10f64.powf(max.max(1.0).log10().floor() + 1.0)
}

/// The latency percentile plot: latency (log) against the percentile
/// (log of 1 / (1 − q)), from the HdrHistogram's quantile steps. `count`
/// is the number of samples (it places the maximum).
pub fn percentile_plot(curve: &[(f64, u64)], count: u64) -> Result<String, ChartError> {
    const CHART: &str = "latency percentile";
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(err(CHART))?;
        let x_last = (count.max(10) as f64).log10();
        let points: Vec<(f64, f64)> = curve
            .iter()
            .map(|&(q, us)| {
                let x = if q >= 1.0 {
                    x_last
                } else {
                    (-(1.0 - q).log10()).min(x_last)
                };
                (x, us.max(1) as f64)
            })
            .collect();
        let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max);
        let x_max = x_last.ceil().max(3.0);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (1f64..log_top(y_max)).log_scale())
            .map_err(err(CHART))?;
        chart
            .configure_mesh()
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| human_us(*y))
            .x_desc("percentile")
            .y_desc("latency")
            .label_style((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        if !points.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    SENT.stroke_width(2),
                ))
                .map_err(err(CHART))?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 2, SENT.filled())),
                )
                .map_err(err(CHART))?;
        }
        root.present().map_err(err(CHART))?;
    }
    Ok(svg)
}

/// Draws the marks as numbered vertical lines (the numbers are those of
/// the page's list of marks).
fn draw_marks<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    data: &TimelineData,
    x_max: f64,
    (y_low, y_high): (f64, f64),
    chart_name: &'static str,
) -> Result<(), ChartError> {
    for (from, to) in windows(data) {
        let (from, to) = (from.clamp(0.0, x_max), to.clamp(0.0, x_max));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, y_low), (to.max(from + 0.05), y_high)],
                WINDOW.mix(0.25).filled(),
            )))
            .map_err(err(chart_name))?;
    }
    for (n, mark) in data.marks.iter().enumerate() {
        if !(0.0..=x_max).contains(&mark.at_s) {
            continue;
        }
        let x = mark.at_s;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y_low), (x, y_high)],
                MARK.mix(0.8).stroke_width(1),
            )))
            .map_err(err(chart_name))?;
        // Numbers of nearby marks are staggered down by rows of 12 px.
        let row = (n % 3) as i32;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, y_high))
                    + Text::new(
                        format!("{}", n + 1),
                        (3, row * 12),
                        (FONT, 12).into_font().color(&MARK),
                    ),
            ))
            .map_err(err(chart_name))?;
    }
    Ok(())
}

/// Windows to shade: from a mark `<what> starts...` to the next mark
/// `<what> ends...` (an upgrade's start and end, for one).
pub fn windows(data: &TimelineData) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, start) in data.marks.iter().enumerate() {
        let Some((what, _)) = start.label.split_once(" starts") else {
            continue;
        };
        let end = data.marks[i + 1..]
            .iter()
            .find(|m| m.label.starts_with(&format!("{what} ends")));
        if let Some(end) = end {
            out.push((start.at_s, end.at_s));
        }
    }
    out
}

fn x_range(data: &TimelineData) -> f64 {
    let last_mark = data
        .marks
        .iter()
        .map(|m| m.at_s)
        .filter(|s| s.is_finite())
        .fold(0.0, f64::max);
    (data.seconds.len() as f64).max(last_mark.ceil()).max(1.0)
}

fn area(svg: &mut String, height: u32) -> DrawingArea<SVGBackend<'_>, Shift> {
    SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area()
}

/// Messages sent and received in each second.
pub fn throughput_chart(data: &TimelineData) -> Result<String, ChartError> {
    const CHART: &str = "messages per second";
    let mut svg = String::new();
    {
        let root = area(&mut svg, 280);
        root.fill(&WHITE).map_err(err(CHART))?;
        let x_max = x_range(data);
        let y_max = data
            .seconds
            .iter()
            .map(|s| s.sent.max(s.received))
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err(CHART))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc("messages / s")
            .label_style((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        // Each second's count is drawn at the middle of its second.
        for (name, colour, get) in [
            (
                "sent",
                SENT,
                (|s: &SecondData| s.sent) as fn(&SecondData) -> u64,
            ),
            ("received", RECEIVED, |s| s.received),
        ] {
            chart
                .draw_series(LineSeries::new(
                    data.seconds
                        .iter()
                        .map(|s| (f64::from(s.t) + 0.5, get(s) as f64)),
                    colour.stroke_width(2),
                ))
                .map_err(err(CHART))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        draw_marks(&mut chart, data, x_max, (0.0, y_max), CHART)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        root.present().map_err(err(CHART))?;
    }
    Ok(svg)
}

/// Latency percentiles (log scale) of what arrived in each second; a
/// second without samples breaks the lines.
pub fn latency_chart(data: &TimelineData) -> Result<String, ChartError> {
    const CHART: &str = "latency per second";
    let mut svg = String::new();
    {
        let root = area(&mut svg, 300);
        root.fill(&WHITE).map_err(err(CHART))?;
        let x_max = x_range(data);
        let y_max = data
            .seconds
            .iter()
            .filter_map(|s| s.latency.map(|p| p.max))
            .max()
            .unwrap_or(1) as f64;
        let y_top = log_top(y_max);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (1f64..y_top).log_scale())
            .map_err(err(CHART))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc("latency")
            .y_label_formatter(&|y| human_us(*y))
            .label_style((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        type Pick = fn(&crate::stats::Percentiles) -> u64;
        for (name, colour, pick) in [
            ("p50", P50, (|p| p.p50) as Pick),
            ("p99", P99, |p| p.p99),
            ("max", MAX, |p| p.max),
        ] {
            // Runs of consecutive seconds with samples.
            let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut previous: Option<u32> = None;
            for s in &data.seconds {
                let Some(p) = &s.latency else { continue };
                let point = (f64::from(s.t) + 0.5, pick(p).max(1) as f64);
                match runs.last_mut() {
                    Some(run) if previous.is_some_and(|t| t + 1 == s.t) => run.push(point),
                    _ => runs.push(vec![point]),
                }
                previous = Some(s.t);
            }
            let mut first = true;
            for run in runs {
                let series = chart
                    .draw_series(LineSeries::new(run, colour.stroke_width(2)).point_size(2))
                    .map_err(err(CHART))?;
                if std::mem::take(&mut first) {
                    series
                        .label(name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
                }
            }
        }
        draw_marks(&mut chart, data, x_max, (1.0, y_top), CHART)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        root.present().map_err(err(CHART))?;
    }
    Ok(svg)
}

/// Connection events per second, one thin bar per kind within each second.
pub fn events_chart(data: &TimelineData) -> Result<String, ChartError> {
    const CHART: &str = "events per second";
    let mut svg = String::new();
    {
        let root = area(&mut svg, 220);
        root.fill(&WHITE).map_err(err(CHART))?;
        let x_max = x_range(data);
        let y_max = data
            .seconds
            .iter()
            .flat_map(|s| s.events)
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err(CHART))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc("events / s")
            .label_style((FONT, 13))
            .draw()
            .map_err(err(CHART))?;
        let kinds = EventKind::ALL.len() as f64;
        let mut drawn = false;
        for (k, kind) in EventKind::ALL.iter().enumerate() {
            let colour = EVENT_COLOURS[k];
            let bars: Vec<_> = data
                .seconds
                .iter()
                .filter(|s| s.events[k] > 0)
                .map(|s| {
                    let x0 = f64::from(s.t) + 0.1 + 0.8 * k as f64 / kinds;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + 0.8 / kinds, s.events[k] as f64)],
                        colour.filled(),
                    )
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            drawn = true;
            chart
                .draw_series(bars)
                .map_err(err(CHART))?
                .label(kind.name())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        draw_marks(&mut chart, data, x_max, (0.0, y_max), CHART)?;
        if drawn {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 13))
                .draw()
                .map_err(err(CHART))?;
        }
        root.present().map_err(err(CHART))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::timeline::Mark;

    #[test]
    fn axis_labels_read_as_people_read_them() {
        assert_eq!(human_us(850.0), "850 µs");
        assert_eq!(human_us(12_000.0), "12 ms");
        assert_eq!(human_us(1_500_000.0), "1.5 s");
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    /// Whether `svg` draws the text `s` (plotters writes it on its own line).
    fn draws(svg: &str, s: &str) -> bool {
        svg.contains(&format!(">\n{s}\n</text>"))
    }

    #[test]
    fn charts_are_svg_with_their_series_and_marks() {
        let mut data = TimelineData::default();
        for t in 0..5 {
            let mut s = SecondData {
                t,
                sent: 100,
                received: 90,
                ..Default::default()
            };
            if t != 2 {
                s.latency = Some(crate::stats::Percentiles {
                    p50: 100,
                    p90: 200,
                    p99: 300,
                    p999: 400,
                    max: 5000,
                });
            }
            s.events[3] = u64::from(t == 3) * 7;
            data.seconds.push(s);
        }
        data.marks.push(Mark {
            at_s: 2.5,
            label: "upgrade starts <now>".into(),
        });
        let t = throughput_chart(&data).unwrap();
        assert!(t.starts_with("<svg"), "{}", &t[..50]);
        assert!(draws(&t, "sent") && draws(&t, "received"));
        assert!(draws(&t, "1"), "mark number drawn");
        let l = latency_chart(&data).unwrap();
        assert!(draws(&l, "p99") && draws(&l, "1 ms"), "log axis in ms");
        let e = events_chart(&data).unwrap();
        assert!(draws(&e, "GOAWAY"));
        assert!(!draws(&e, "cuts"), "kinds that never happened are left out");
        data.marks.push(Mark {
            at_s: 3.0,
            label: "upgrade ends: exited".into(),
        });
        assert_eq!(windows(&data), vec![(2.5, 3.0)]);
        let shaded = throughput_chart(&data).unwrap();
        assert!(
            shaded.contains("fill=\"#FFD700\""),
            "the upgrade window is shaded"
        );
        let p =
            percentile_plot(&[(0.0, 10), (0.5, 100), (0.99, 1000), (1.0, 20_000)], 1000).unwrap();
        assert!(draws(&p, "99.9%") && p.contains("polyline"));
        // An empty run still draws.
        assert!(throughput_chart(&TimelineData::default()).is_ok());
        assert!(percentile_plot(&[], 0).is_ok());
    }
}
