//! SVG plots, drawn with plotters' SVG backend only: text is emitted as SVG
//! `<text>` and left to the browser's fonts, so no system font library is
//! needed. Every plot is built from a [`RunData`] (the run directory's
//! files), so a run's plots and `eventbench report`'s are the same.
//!
//! - [`latency`]: the percentile spectrum, x = -log10(1 - p) (90%, 99%,
//!   99.9%, ... evenly spaced), y = latency on a log scale, corrected and raw.
//! - [`timeline`]: per second of send time, rates, lost deliveries, latency
//!   and (Streams) backlog, with the seconds some consumers were away shaded.
//! - [`compare_latency`], [`compare_timeline`]: the same, one colour per run.

use super::rundir::RunData;
use crate::stats::us;
use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

pub(crate) const WIDTH: u32 = 1000;
const SPECTRUM_HEIGHT: u32 = 520;
const PANEL_HEIGHT: u32 = 240;
/// Most columns a timeline draws (about one per pixel of its plots): a
/// longer run's seconds are taken together, so that a soak's plot (and the
/// memory to build it) does not grow with its length.
const MOST_COLUMNS: usize = 600;
pub(crate) const FONT: &str = "sans-serif";
/// Text sizes as plotters takes them (it writes `font-size` as 1/1.24 of
/// them into the SVG). A page shows a plot 1,000 px wide at about 750 px in
/// an 800 px window (at full size from 1,100 px up), so 22 (17.7 px in the
/// SVG) stays above 13 px on screen, and the smallest, 20, above 12.
const TEXT_PX: u32 = 22;
const SMALL_PX: u32 = 20;
const TITLE_PX: u32 = 26;

pub(crate) const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(crate) const GREEN: RGBColor = RGBColor(44, 160, 44);
pub(crate) const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub(crate) const GREY: RGBColor = RGBColor(127, 127, 127);
const TEAL: RGBColor = RGBColor(23, 190, 207);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const MAROON: RGBColor = RGBColor(128, 20, 30);
/// One colour per run in comparisons.
const RUN_COLOURS: [RGBColor; 6] = [BLUE, ORANGE, GREEN, PURPLE, BROWN, TEAL];
/// Shading of the seconds when consumers were away.
const OUTAGE: RGBColor = RGBColor(230, 85, 13);
/// The strip of the time a cluster node was down.
const NODE_DOWN: RGBColor = RGBColor(60, 60, 70);
/// How opaque a shaded span is, in the plot and in its legend swatch alike.
const BAND_ALPHA: f64 = 0.15;
const STRIP_ALPHA: f64 = 0.85;
/// Where a legend's first entry sits, and the distance between entries (px).
const LEGEND_TOP: i32 = 26;
const LEGEND_LINE: i32 = 28;

pub(crate) fn run_colour(i: usize) -> RGBColor {
    RUN_COLOURS[i % RUN_COLOURS.len()]
}

/// An axis label for a latency in µs: `250 µs`, `1.5 ms`, `2 s` (no trailing zeros).
pub(crate) fn fmt_latency(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    let digits = if v >= 100.0 || v == v.round() {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text} {unit}")
}

/// A count with a k/M suffix for axis labels.
pub(crate) fn fmt_count(v: f64) -> String {
    let a = v.abs();
    let (v, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{v:.1}");
    format!("{}{suffix}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The percentile at x = -log10(1 - p): 0 → 0%, 1 → 90%, 3 → 99.9%.
fn fmt_percentile(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.6}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A line to draw: its points are (x, y) in the panel's units.
pub(crate) struct Curve {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    pub(crate) dashed: bool,
    pub(crate) width: u32,
    pub(crate) points: Vec<(f64, f64)>,
}

/// The spectrum of a histogram, sampled evenly on the percentile axis up to
/// the last sample (x = log10(count)), where the maximum sits.
fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let end = (h.len() as f64).log10();
    let mut points: Vec<(f64, f64)> = (0..)
        .map(|i| i as f64 * 0.02)
        .take_while(|&x| x < end)
        .map(|x| (x, us(h.value_at_quantile(1.0 - 10f64.powf(-x)))))
        .collect();
    points.push((end, us(h.max())));
    points
}

/// The raw (actual send time) spectrum: `latency.csv` keeps it at fixed
/// percentiles only, so it is drawn through those, with 100% at `end`.
fn raw_points(run: &RunData, end: f64) -> Vec<(f64, f64)> {
    run.latency
        .iter()
        .map(|r| (if r.percentile >= 100.0 { end } else { -(1.0 - r.percentile / 100.0).log10() }, r.raw_latency_us))
        .filter(|&(x, _)| x <= end)
        .collect()
}

/// The log10 range of a latency axis: from the decade below the data to a
/// little above it, so the legend stays off the curves.
pub(crate) fn decades(curves: &[Curve], headroom: f64) -> (f64, f64) {
    let ys = curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)).filter(|&y| y > 0.0);
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if lo > hi {
        return (0.0, 3.0);
    }
    let lo = lo.log10().floor();
    let hi = (hi.log10() + headroom).max(lo + 1.0);
    (lo, hi)
}

/// An f64 axis with ticks we choose (plotters' own key-point wrapper cannot
/// take a custom label formatter).
#[derive(Clone)]
pub(crate) struct Ticked {
    pub(crate) range: Range<f64>,
    /// Labelled ticks and grid lines.
    pub(crate) bold: Vec<f64>,
    /// Fainter grid lines only.
    pub(crate) light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let f = if span > 0.0 { (value - self.range.start) / span } else { 0.0 };
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// A linear axis from 0 to `hi` with about five ticks at 1, 2 or 5 × 10^k.
pub(crate) fn linear_axis(hi: f64) -> Ticked {
    let raw = hi / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(magnitude * 10.0);
    let bold = (0..).map(|i| i as f64 * step).take_while(|&v| v <= hi).collect();
    Ticked { range: 0.0..hi, bold, light: Vec::new() }
}

/// The y axis of a latency plot: log10(µs) with labels at each decade, and
/// at 2 and 5 too when the axis spans at most `dense_up_to` decades.
///
/// The top is raised to a round 1, 2 or 5 × 10^k and labelled, so that the
/// axis says where it ends.
pub(crate) fn latency_axis(lo: f64, hi: f64, dense_up_to: f64) -> Ticked {
    let decade = hi.floor();
    let hi = [1.0f64, 2.0, 5.0, 10.0].iter().map(|m| decade + m.log10()).find(|&v| v >= hi - 1e-9).unwrap_or(hi);
    let mut bold = Vec::new();
    let mut light = Vec::new();
    for d in lo as i32..=hi as i32 {
        for m in 1..10 {
            let v = (m as f64).log10() + d as f64;
            if v > hi + 1e-9 {
                break;
            }
            let dense = hi - lo <= dense_up_to && (m == 2 || m == 5);
            if m == 1 || dense {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
    }
    if !bold.iter().any(|b| (b - hi).abs() < 1e-9) {
        light.retain(|l| (l - hi).abs() >= 1e-9);
        bold.push(hi);
    }
    Ticked { range: lo..hi, bold, light }
}

/// A log10 axis over `lo..hi` with ticks at 1, 2 and 5 × 10^k inside it.
pub(crate) fn log_axis(lo: f64, hi: f64) -> Ticked {
    let t = latency_axis(lo.floor(), hi, 2.5);
    let inside = |v: &f64| *v >= lo - 1e-9 && *v <= hi + 1e-9;
    let mut bold: Vec<f64> = t.bold.into_iter().filter(inside).collect();
    let mut light: Vec<f64> = t.light.into_iter().filter(inside).collect();
    if bold.len() < 2 {
        // A narrow range: label every tick there is.
        bold.append(&mut light);
        bold.sort_by(f64::total_cmp);
    }
    Ticked { range: lo..hi, bold, light }
}

pub(crate) fn fmt_log_rate(v: &f64) -> String {
    fmt_count(10f64.powf(*v))
}

pub(crate) fn fmt_log_latency(v: &f64) -> String {
    fmt_latency(10f64.powf(*v))
}

/// Draws the spectrum of `curves` (y in µs).
fn spectrum_svg(title: &str, curves: &[Curve]) -> Result<String> {
    let end = curves.iter().flat_map(|c| c.points.last()).map(|p| p.0).fold(0.0, f64::max);
    let max_x = end.ceil().clamp(2.0, 9.0);
    let (lo, hi) = decades(curves, 0.1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, SPECTRUM_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let x_axis =
            Ticked { range: 0.0..max_x, bold: (0..=max_x as usize).map(|x| x as f64).collect(), light: vec![] };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, TITLE_PX))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(64)
            .y_label_area_size(120)
            .build_cartesian_2d(x_axis, latency_axis(lo, hi, 3.0))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale: each step adds a 9)")
            .y_desc("latency (log scale)")
            .x_label_formatter(&fmt_percentile)
            .y_label_formatter(&fmt_log_latency)
            .label_style((FONT, TEXT_PX))
            .axis_desc_style((FONT, TEXT_PX))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()
            .map_err(plot_error)?;
        for c in curves {
            let points = c.points.iter().filter(|p| p.1 > 0.0).map(|&(x, y)| (x, y.log10().clamp(lo, hi))).collect();
            draw_curve(&mut chart, &Curve { label: c.label.clone(), points, ..*c })?;
        }
        // A spectrum only rises, so the lower right is where no curve goes.
        legend_sized(&mut chart, SeriesLabelPosition::LowerRight, TEXT_PX)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// Draws a curve; a labelled one also gets an entry in the chart's legend.
pub(crate) fn draw_curve<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, c: &Curve) -> Result<()> {
    let style = c.colour.stroke_width(c.width);
    let points = c.points.iter().copied();
    let legend_style = style;
    let drawn = if c.dashed {
        chart.draw_series(DashedLineSeries::new(points, 7, 5, style)).map_err(plot_error)?
    } else {
        chart.draw_series(LineSeries::new(points, style)).map_err(plot_error)?
    };
    if !c.label.is_empty() {
        let dashed = c.dashed;
        drawn.label(c.label.clone()).legend(move |(x, y)| {
            let to = if dashed { x + 10 } else { x + 22 };
            PathElement::new(vec![(x, y), (to, y)], legend_style)
        });
    }
    Ok(())
}

pub(crate) fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    legend_sized(chart, position, 14)
}

/// [`legend`] with labels of `px` pixels.
fn legend_sized<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition, px: u32) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(190, 190, 190))
        .label_font((FONT, px))
        .draw()
        .map_err(plot_error)
}

pub(crate) fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// `latency.svg`: the percentile spectrum of one run, corrected and raw.
pub fn latency(run: &RunData) -> Result<String> {
    let corrected = spectrum_points(run.hlog.merged());
    let end = corrected.last().map_or(0.0, |p| p.0);
    let curves = [
        Curve {
            label: "from intended send time (corrected)".into(),
            colour: BLUE,
            dashed: false,
            width: 2,
            points: corrected,
        },
        Curve {
            label: "from actual send time (raw, closed-loop view)".into(),
            colour: GREY,
            dashed: true,
            width: 2,
            points: raw_points(run, end),
        },
    ];
    spectrum_svg(&format!("Latency by percentile: {}", run.name()), &curves)
}

/// `compare-latency.svg`: the corrected spectra of several runs.
pub fn compare_latency(runs: &[RunData], labels: &[String]) -> Result<String> {
    let curves: Vec<Curve> = runs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (run, label))| Curve {
            label: label.clone(),
            colour: run_colour(i),
            dashed: false,
            width: 2,
            points: spectrum_points(run.hlog.merged()),
        })
        .collect();
    spectrum_svg("Latency by percentile, from the intended send time", &curves)
}

/// How a panel draws its series.
#[derive(Clone, Copy, PartialEq)]
enum Look {
    Line,
    Dashed,
    /// Bars per second, `slot` of `of` side by side; bars of the same slot
    /// stack (causes of one total), with the total written above.
    Bars {
        slot: usize,
        of: usize,
    },
}

/// One series of a timeline panel: a value per second.
struct Series {
    label: String,
    colour: RGBColor,
    look: Look,
    /// `None` where the second has no value (e.g. no latency without deliveries).
    values: Vec<Option<f64>>,
}

/// A horizontal strip of the timeline sharing the x axis (seconds).
struct Panel {
    y_desc: String,
    /// Latency panels: log10(µs) axis.
    latency: bool,
    series: Vec<Series>,
    /// Shown when every value is zero, so "nothing" is said, not guessed.
    when_empty: Option<&'static str>,
}

impl Panel {
    /// The panel with `per` seconds taken together into each value: a rate
    /// by its mean, a latency by its worst second, a loss by its sum (a loss
    /// of 3 beside rates of thousands is still seen).
    fn binned(&self, per: usize) -> Panel {
        let series = self
            .series
            .iter()
            .map(|s| {
                let values = s
                    .values
                    .chunks(per)
                    .map(|chunk| {
                        let mut known = chunk.iter().flatten().copied().peekable();
                        known.peek()?;
                        Some(match s.look {
                            _ if self.latency => known.fold(f64::MIN, f64::max),
                            Look::Bars { .. } => known.sum(),
                            Look::Line | Look::Dashed => {
                                let (sum, n) = known.fold((0.0, 0.0), |(sum, n), v| (sum + v, n + 1.0));
                                sum / n
                            }
                        })
                    })
                    .collect();
                Series { label: s.label.clone(), colour: s.colour, look: s.look, values }
            })
            .collect();
        Panel { y_desc: self.y_desc.clone(), latency: self.latency, series, when_empty: self.when_empty }
    }
}

/// A span of the measured phase, `[from, to)` in seconds, marked in `colour`:
/// shaded over the whole height, or (with `strip`) as the `strip`-th solid
/// strip from the top, so that spans of several runs or kinds never blend
/// into a colour no legend entry shows.
struct Band {
    from: f64,
    to: f64,
    colour: RGBColor,
    strip: Option<usize>,
}

/// When some consumers were away: the exact times of `events.csv` (from a
/// consumer's disconnect, cut-off or crash to its return), else, for a run
/// directory without events, the seconds in which fewer consumers than
/// configured were connected.
fn outage_bands(run: &RunData, colour: RGBColor, strip: Option<usize>) -> Vec<Band> {
    let end = run.timeseries.len() as f64;
    if let Some(spans) = run
        .events
        .as_ref()
        .and_then(|e| spans(e, end, &["disconnect", "server-kill", "slot-moved", "crash"], "resubscribed"))
    {
        return spans.into_iter().map(|(from, to)| Band { from, to, colour, strip }).collect();
    }
    let mut bands: Vec<Band> = Vec::new();
    for (s, row) in run.timeseries.iter().enumerate() {
        if row.connected_consumers >= run.summary.consumers {
            continue;
        }
        match bands.last_mut() {
            Some(b) if b.to == s as f64 => b.to += 1.0,
            _ => bands.push(Band { from: s as f64, to: s as f64 + 1.0, colour, strip }),
        }
    }
    bands
}

/// When a cluster node was down (`--kill-node`): from `node-down` to `node-up` in `events.csv`.
fn node_down_bands(run: &RunData, colour: RGBColor, strip: usize) -> Vec<Band> {
    let end = run.timeseries.len() as f64;
    let spans = run.events.as_ref().and_then(|e| spans(e, end, &["node-down"], "node-up")).unwrap_or_default();
    spans.into_iter().map(|(from, to)| Band { from, to, colour, strip: Some(strip) }).collect()
}

/// The union of the spans in `events` that start with one of `opens` for a
/// consumer (or node) and end at its next `close` (or at `end`), within
/// `[0, end]`; `None` if the table lacks the columns.
fn spans(events: &super::rundir::Table, end: f64, opens: &[&str], close: &str) -> Option<Vec<(f64, f64)>> {
    let col = |name: &str| events.header.iter().position(|h| h == name);
    let (at, who, kind) = (col("at_s")?, col("consumer")?, col("kind")?);
    let mut rows: Vec<(f64, &str, &str)> = events
        .rows
        .iter()
        .filter_map(|r| Some((r.get(at)?.parse::<f64>().ok()?, r.get(who)?.as_str(), r.get(kind)?.as_str())))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut open: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut spans = Vec::new();
    for (t, who, kind) in rows {
        if opens.contains(&kind) {
            open.entry(who).or_insert(t);
        } else if kind == close {
            if let Some(from) = open.remove(who) {
                spans.push((from, t));
            }
        }
    }
    spans.extend(open.into_values().map(|from| (from, end)));
    let mut spans: Vec<(f64, f64)> =
        spans.into_iter().map(|(a, b)| (a.clamp(0.0, end), b.clamp(0.0, end))).filter(|(a, b)| b > a).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Some(merged)
}

/// Length of each second of the run (the last may be partial), from the log.
fn second_lengths(run: &RunData) -> Vec<f64> {
    (0..run.timeseries.len()).map(|s| run.hlog.intervals.get(s).map_or(1.0, |i| i.length_s).max(1e-3)).collect()
}

fn per_second(run: &RunData, f: impl Fn(&crate::rows::TimeseriesRow) -> f64) -> Vec<Option<f64>> {
    run.timeseries.iter().zip(second_lengths(run)).map(|(r, len)| Some(f(r) / len)).collect()
}

fn latency_series(run: &RunData, f: impl Fn(&crate::rows::TimeseriesRow) -> Option<f64>) -> Vec<Option<f64>> {
    run.timeseries.iter().map(|r| f(r).filter(|&v| r.delivered > 0 && v > 0.0)).collect()
}

/// The schedule's rate per second, when the run had one (not `--rate 0`,
/// and not a run written before `target_rate` was a column).
fn target_series(run: &RunData) -> Option<Series> {
    run.timeseries.iter().any(|r| r.target_rate > 0.0).then(|| Series {
        label: "target/s".into(),
        colour: BROWN,
        look: Look::Dashed,
        values: run.timeseries.iter().map(|r| Some(r.target_rate)).collect(),
    })
}

/// `timeline.svg`: one run second by second.
pub fn timeline(run: &RunData) -> Result<String> {
    let mut panels = vec![
        // Messages and deliveries apart: with fan-out a message makes several
        // deliveries, and one axis for both would read as a loss or a surplus.
        Panel {
            y_desc: "messages per second".into(),
            latency: false,
            series: vec![Series {
                label: "sent/s".into(),
                colour: GREEN,
                look: Look::Line,
                values: per_second(run, |r| r.sent as f64),
            }]
            .into_iter()
            .chain(target_series(run))
            .collect(),
            when_empty: None,
        },
        Panel {
            y_desc: "deliveries per second".into(),
            latency: false,
            series: vec![
                Series {
                    label: "expected deliveries/s".into(),
                    colour: GREY,
                    look: Look::Dashed,
                    values: per_second(run, |r| (r.delivered + r.lost + r.undelivered) as f64),
                },
                Series {
                    label: "delivered/s".into(),
                    colour: BLUE,
                    look: Look::Line,
                    values: per_second(run, |r| r.delivered as f64),
                },
            ],
            when_empty: None,
        },
        Panel {
            y_desc: "lost deliveries".into(),
            latency: false,
            series: loss_by_cause(run),
            when_empty: Some("nothing lost"),
        },
        Panel {
            y_desc: "latency (log scale)".into(),
            latency: true,
            series: vec![
                Series {
                    label: "max".into(),
                    colour: GREY,
                    look: Look::Dashed,
                    values: latency_series(run, |r| r.max_us),
                },
                Series {
                    label: "p99".into(),
                    colour: PURPLE,
                    look: Look::Line,
                    values: latency_series(run, |r| r.p99_us),
                },
                Series {
                    label: "p50".into(),
                    colour: TEAL,
                    look: Look::Line,
                    values: latency_series(run, |r| r.p50_us),
                },
            ],
            when_empty: Some("no deliveries"),
        },
    ];
    // What was due and had not arrived at the end of each second: flat when
    // the system keeps up, climbing when it does not.
    let mut waiting = vec![Series {
        label: "in flight".into(),
        colour: BLUE,
        look: Look::Line,
        values: run.timeseries.iter().map(|t| Some(t.in_flight as f64)).collect(),
    }];
    if run.keeps_backlog() {
        waiting.push(Series {
            label: "backlog (stream)".into(),
            colour: ORANGE,
            look: Look::Line,
            values: run.timeseries.iter().map(|t| Some(t.backlog as f64)).collect(),
        });
    }
    panels.push(backlog_panel(waiting));
    panels.extend(server_panel(run));
    let mut bands = outage_bands(run, OUTAGE, None);
    let mut labels: Vec<(String, Mark)> = Vec::new();
    if !bands.is_empty() {
        labels.push(("consumers disconnected".into(), Mark::Shade(OUTAGE)));
    }
    let node_down = node_down_bands(run, NODE_DOWN, 0);
    if !node_down.is_empty() {
        labels.push(("cluster node down".into(), Mark::Strip(NODE_DOWN)));
        bands.extend(node_down);
    }
    // An interrupted run's series ends where it stopped: say so where it does.
    if run.summary.status != "ok" {
        let at = run.summary.duration_s;
        bands.push(Band { from: (at - 0.05).max(0.0), to: at + 0.05, colour: RED, strip: None });
        labels.push((format!("{} at {:.2} s", run.summary.status, at), Mark::Shade(RED)));
    }
    timeline_svg(
        &format!("Timeline: {} (by second each message was due)", run.name()),
        run.timeseries.len(),
        &panels,
        &bands,
        labels,
    )
}

/// Lost deliveries per second, stacked by cause: the consumer was not
/// subscribed, Redis dropped them from its output buffer, or anything else.
/// Causes that never occur stay out of the legend.
fn loss_by_cause(run: &RunData) -> Vec<Series> {
    let t = &run.timeseries;
    let causes: [(&str, RGBColor, Vec<u64>); 4] = [
        ("lost: not subscribed", RED, t.iter().map(|r| r.lost_unsubscribed).collect()),
        ("lost: in Redis's buffer", MAROON, t.iter().map(|r| r.lost_in_buffer).collect()),
        ("lost: trimmed", ORANGE, t.iter().map(|r| r.lost_trimmed).collect()),
        (
            "lost: other cause",
            GREY,
            t.iter().map(|r| r.lost.saturating_sub(r.lost_unsubscribed + r.lost_in_buffer + r.lost_trimmed)).collect(),
        ),
    ];
    let series: Vec<Series> = causes
        .into_iter()
        .filter(|(_, _, v)| v.iter().any(|&n| n > 0))
        .map(|(label, colour, v)| Series {
            label: label.into(),
            colour,
            look: Look::Bars { slot: 0, of: 1 },
            values: v.into_iter().map(|n| Some(n as f64)).collect(),
        })
        .collect();
    if !series.is_empty() {
        return series;
    }
    vec![Series {
        label: "lost".into(),
        colour: RED,
        look: Look::Bars { slot: 0, of: 1 },
        values: t.iter().map(|r| Some(r.lost as f64)).collect(),
    }]
}

/// The server's CPU, % of one core, second by second and node by node (from
/// `server.csv`): beside the latency, whether the server was working to its
/// limit. `None` for a run without server telemetry.
fn server_panel(run: &RunData) -> Option<Panel> {
    if run.server.is_empty() {
        return None;
    }
    let seconds = run.timeseries.len();
    let mut nodes: Vec<u32> = run.server.iter().map(|r| r.node).collect();
    nodes.dedup();
    nodes.sort_unstable();
    nodes.dedup();
    let of_node = |node: u32, f: fn(&crate::rows::ServerRow) -> Option<f64>| {
        let mut values = vec![None; seconds];
        for r in run.server.iter().filter(|r| r.node == node && (r.second as usize) < seconds) {
            values[r.second as usize] = f(r);
        }
        values
    };
    let mut series = Vec::new();
    for (i, &node) in nodes.iter().enumerate() {
        let name = if nodes.len() > 1 { format!(" (node {node})") } else { String::new() };
        let colour = if nodes.len() > 1 { run_colour(i) } else { BLUE };
        series.push(Series {
            label: format!("server CPU{name}"),
            colour,
            look: Look::Line,
            values: of_node(node, |r| r.server_cpu_pct),
        });
        let main = of_node(node, |r| r.server_main_thread_cpu_pct);
        if nodes.len() == 1 && main.iter().any(Option::is_some) {
            series.push(Series { label: "main thread".into(), colour: GREY, look: Look::Dashed, values: main });
        }
    }
    Some(Panel { y_desc: "server CPU, % of a core".into(), latency: false, series, when_empty: Some("server idle") })
}

fn backlog_panel(series: Vec<Series>) -> Panel {
    Panel { y_desc: "waiting for consumers".into(), latency: false, series, when_empty: Some("nothing waiting") }
}

/// `compare-timeline.svg`: several runs second by second, one colour each.
pub fn compare_timeline(runs: &[RunData], labels: &[String]) -> Result<String> {
    let n = runs.len();
    let each = |f: &dyn Fn(usize, &RunData, &String) -> Vec<Series>| -> Vec<Series> {
        runs.iter().zip(labels).enumerate().flat_map(|(i, (r, l))| f(i, r, l)).collect()
    };
    let mut panels = vec![
        Panel {
            y_desc: "deliveries per second".into(),
            latency: false,
            series: each(&|i, r, l| {
                vec![
                    Series {
                        label: format!("{l}: delivered/s"),
                        colour: run_colour(i),
                        look: Look::Line,
                        values: per_second(r, |t| t.delivered as f64),
                    },
                    Series {
                        label: format!("{l}: expected/s"),
                        colour: run_colour(i),
                        look: Look::Dashed,
                        values: per_second(r, |t| (t.delivered + t.lost) as f64),
                    },
                ]
            }),
            when_empty: None,
        },
        Panel {
            y_desc: "lost deliveries".into(),
            latency: false,
            series: each(&|i, r, l| {
                vec![Series {
                    label: format!("{l}: lost"),
                    colour: run_colour(i),
                    look: Look::Bars { slot: i, of: n },
                    values: r.timeseries.iter().map(|t| Some(t.lost as f64)).collect(),
                }]
            }),
            when_empty: Some("nothing lost"),
        },
        Panel {
            y_desc: "p99 latency (log scale)".into(),
            latency: true,
            series: each(&|i, r, l| {
                vec![Series {
                    label: format!("{l}: p99"),
                    colour: run_colour(i),
                    look: Look::Line,
                    values: latency_series(r, |t| t.p99_us),
                }]
            }),
            when_empty: Some("no deliveries"),
        },
    ];
    if runs.iter().any(RunData::keeps_backlog) {
        panels.push(backlog_panel(each(&|i, r, l| {
            (r.keeps_backlog())
                .then(|| Series {
                    label: format!("{l}: backlog"),
                    colour: run_colour(i),
                    look: Look::Line,
                    values: r.timeseries.iter().map(|t| Some(t.backlog as f64)).collect(),
                })
                .into_iter()
                .collect()
        })));
    }
    // Each run's outages in a strip of its own: shading would blend where they overlap.
    let mut bands = Vec::new();
    let mut band_labels = Vec::new();
    for (i, (run, label)) in runs.iter().zip(labels).enumerate() {
        let b = outage_bands(run, run_colour(i), Some(band_labels.len()));
        if !b.is_empty() {
            band_labels.push((format!("{label}: consumers disconnected"), Mark::Strip(run_colour(i))));
        }
        bands.extend(b);
    }
    let seconds = runs.iter().map(|r| r.timeseries.len()).max().unwrap_or(0);
    timeline_svg("Timeline, by second each message was due", seconds, &panels, &bands, band_labels)
}

/// Draws stacked panels over `seconds` with shaded `bands`.
fn timeline_svg(
    title: &str,
    seconds: usize,
    panels: &[Panel],
    bands: &[Band],
    band_labels: Vec<(String, Mark)>,
) -> Result<String> {
    // A panel is as tall as its legend needs: entries never run into the next panel.
    let entries = |p: usize| panels[p].series.len() + if p == 0 { band_labels.len() } else { 0 };
    let most = (0..panels.len()).map(entries).max().unwrap_or(0) as u32;
    let panel_height = PANEL_HEIGHT.max(LEGEND_TOP as u32 + LEGEND_LINE as u32 * most + 10);
    let height = 50 + panel_height * panels.len() as u32;
    let longest = panels
        .iter()
        .flat_map(|p| p.series.iter().map(|s| s.label.chars().count()))
        .chain(band_labels.iter().map(|(l, _)| l.chars().count()))
        .max()
        .unwrap_or(0);
    // About 0.55 em per character of the legend's text (its SVG size: TEXT_PX / 1.24).
    let legend_width = (longest as u32 * TEXT_PX * 11 / 25 + 56).clamp(170, 420);
    let per = seconds.div_ceil(MOST_COLUMNS).max(1);
    let binned: Vec<Panel>;
    let (panels, title) = if per > 1 {
        binned = panels.iter().map(|p| p.binned(per)).collect();
        let title =
            format!("{title}; a point per {per} s: rates their mean, latencies their worst second, losses their sum");
        (&binned[..], title)
    } else {
        (panels, title.to_string())
    };
    let max_x = seconds.max(1) as f64;
    let step = (seconds as f64 / 15.0).ceil().max(1.0) as usize;
    let ticks: Vec<f64> = (0..=seconds.max(1)).step_by(step).map(|s| s as f64).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let body = root.titled(&title, (FONT, TITLE_PX)).map_err(plot_error)?;
        let areas = body.split_evenly((panels.len(), 1));
        for (p, (panel, area)) in panels.iter().zip(&areas).enumerate() {
            let last = p + 1 == panels.len();
            // Legends stand right of the plots, where they hide no data.
            let (area, side) = area.split_horizontally(WIDTH - legend_width);
            let mut entries: Vec<(String, Mark)> = Vec::new();
            if p == 0 {
                entries.extend(band_labels.iter().cloned());
            }
            entries.extend(panel.series.iter().map(|s| (s.label.clone(), Mark::of(s))));
            draw_legend(&side, &entries)?;
            let x_axis = || Ticked { range: 0.0..max_x, bold: ticks.clone(), light: vec![] };
            let mut builder = ChartBuilder::on(&area);
            builder.margin_left(12).margin_right(12).margin_top(8).y_label_area_size(116);
            builder.x_label_area_size(if last { 60 } else { 32 });
            if panel.latency {
                let curves: Vec<Curve> = panel
                    .series
                    .iter()
                    .map(|s| Curve {
                        label: String::new(),
                        colour: s.colour,
                        dashed: false,
                        width: 1,
                        points: s.values.iter().flatten().map(|&v| (0.0, v)).collect(),
                    })
                    .collect();
                let (lo, hi) = decades(&curves, 0.15);
                let mut chart = builder.build_cartesian_2d(x_axis(), latency_axis(lo, hi, 1.6)).map_err(plot_error)?;
                let to_y = move |v: f64| v.log10().clamp(lo, hi);
                draw_panel(&mut chart, panel, bands, last, per, lo, &fmt_log_latency, to_y)?;
            } else {
                let top = panel.series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, &b| a.max(b));
                let hi = if top > 0.0 { top * 1.15 } else { 1.0 };
                let mut chart = builder.build_cartesian_2d(x_axis(), linear_axis(hi)).map_err(plot_error)?;
                draw_panel(&mut chart, panel, bands, last, per, 0.0, &|v: &f64| fmt_count(*v), |v| v)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Bar(RGBColor),
    /// A shaded span of seconds.
    Shade(RGBColor),
    /// A span drawn as a strip at the top of the panels.
    Strip(RGBColor),
}

impl Mark {
    fn of(s: &Series) -> Mark {
        match s.look {
            Look::Line => Mark::Line(s.colour),
            Look::Dashed => Mark::Dashed(s.colour),
            Look::Bars { .. } => Mark::Bar(s.colour),
        }
    }
}

/// A legend in its own area: one line per entry, mark then label.
fn draw_legend(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, entries: &[(String, Mark)]) -> Result<()> {
    for (i, (label, mark)) in entries.iter().enumerate() {
        let y = LEGEND_TOP + i as i32 * LEGEND_LINE;
        let (x0, x1) = (8, 32);
        match *mark {
            Mark::Line(c) => area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(2))),
            Mark::Dashed(c) => {
                let style = c.stroke_width(2);
                area.draw(&PathElement::new(vec![(x0, y), (x0 + 9, y)], style))
                    .and_then(|_| area.draw(&PathElement::new(vec![(x0 + 15, y), (x1, y)], style)))
            }
            Mark::Bar(c) => area.draw(&Rectangle::new([(x0 + 4, y - 6), (x1 - 4, y + 6)], c.filled())),
            Mark::Shade(c) => area.draw(&Rectangle::new([(x0, y - 7), (x1, y + 7)], c.mix(BAND_ALPHA).filled())),
            Mark::Strip(c) => area.draw(&Rectangle::new([(x0, y - 3), (x1, y + 3)], c.mix(STRIP_ALPHA).filled())),
        }
        .map_err(plot_error)?;
        let style = TextStyle::from((FONT, TEXT_PX).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.clone(), (x1 + 8, y), style)).map_err(plot_error)?;
    }
    Ok(())
}

/// Draws `panel`, whose values stand `per` seconds each.
#[allow(clippy::too_many_arguments)]
fn draw_panel<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    panel: &Panel,
    bands: &[Band],
    last: bool,
    per: usize,
    floor: f64,
    y_format: &dyn Fn(&f64) -> String,
    to_y: impl Fn(f64) -> f64,
) -> Result<()> {
    let (y0, y1) = {
        let r = chart.y_range();
        (r.start, r.end)
    };
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.y_desc.as_str())
        .y_label_formatter(y_format)
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .label_style((FONT, TEXT_PX))
        .axis_desc_style((FONT, TEXT_PX))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .y_labels(5);
    if last {
        mesh.x_desc("second of the measured phase (s)");
    }
    mesh.draw().map_err(plot_error)?;

    let strip = (y1 - y0) * 0.03;
    chart
        .draw_series(bands.iter().map(|b| match b.strip {
            None => Rectangle::new([(b.from, y0), (b.to, y1)], b.colour.mix(BAND_ALPHA).filled()),
            Some(k) => {
                let top = y1 - k as f64 * strip;
                Rectangle::new([(b.from, top - strip), (b.to, top)], b.colour.mix(STRIP_ALPHA).filled())
            }
        }))
        .map_err(plot_error)?;

    // Per bar slot: its colour and the stacked total of each second so far.
    let mut stacks: std::collections::BTreeMap<usize, (RGBColor, Vec<f64>)> = Default::default();
    for s in &panel.series {
        match s.look {
            Look::Bars { slot, of } => {
                let width = 0.8 / of as f64 * per as f64;
                let x = |col: usize| (col * per) as f64 + 0.1 * per as f64 + slot as f64 * width;
                let base = &mut stacks.entry(slot).or_insert_with(|| (s.colour, vec![0.0; s.values.len()])).1;
                let mut bars = Vec::new();
                for (sec, v) in s.values.iter().enumerate() {
                    let (Some(v), Some(b)) = (v.filter(|&v| v > 0.0), base.get_mut(sec)) else { continue };
                    let from = if *b > 0.0 { to_y(*b) } else { floor };
                    bars.push(Rectangle::new([(x(sec), from), (x(sec) + width, to_y(*b + v))], s.colour.filled()));
                    *b += v;
                }
                chart.draw_series(bars).map_err(plot_error)?;
            }
            Look::Line | Look::Dashed => {
                // A gap (a second with no value) breaks the line rather than bridging it.
                for run in segments(&s.values) {
                    // Steps, not slopes: each value holds for its whole second.
                    let end = chart.x_range().end;
                    let points = run
                        .into_iter()
                        .flat_map(|(col, v)| {
                            let from = (col * per) as f64;
                            [(from, to_y(v)), ((from + per as f64).min(end), to_y(v))]
                        })
                        .collect();
                    let dashed = s.look == Look::Dashed;
                    draw_curve(chart, &Curve { label: String::new(), colour: s.colour, dashed, width: 2, points })?;
                }
            }
        }
    }
    // The total over each bar, so a loss of 3 next to one of 10,000 is still seen.
    for (&slot, (colour, totals)) in &stacks {
        let of = panel.series.iter().find_map(|s| if let Look::Bars { of, .. } = s.look { Some(of) } else { None });
        let width = 0.8 / of.unwrap_or(1) as f64 * per as f64;
        if totals.len() > 40 {
            continue;
        }
        let style =
            TextStyle::from((FONT, SMALL_PX).into_font()).color(colour).pos(Pos::new(HPos::Center, VPos::Bottom));
        let counts = totals.iter().enumerate().filter(|(_, &v)| v > 0.0).map(|(sec, &v)| {
            let x = (sec * per) as f64 + 0.1 * per as f64 + (slot as f64 + 0.5) * width;
            // Side-by-side bars (a comparison): every other run's totals a line
            // higher, so that neighbouring labels never run into each other.
            let lift = -(slot as i32 % 2) * (SMALL_PX as i32);
            EmptyElement::at((x, to_y(v))) + Text::new(super::fmt::thousands(v as u64), (0, lift), style.clone())
        });
        chart.draw_series(counts).map_err(plot_error)?;
    }
    let empty = panel.series.iter().all(|s| s.values.iter().flatten().all(|&v| v == 0.0));
    if let (true, Some(text)) = (empty, panel.when_empty) {
        let x = chart.x_range();
        let at = ((x.start + x.end) / 2.0, y0 + (y1 - y0) / 2.0);
        chart
            .draw_series(std::iter::once(Text::new(text, at, (FONT, TEXT_PX).into_font().color(&GREY))))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Runs of consecutive seconds that have a value.
fn segments(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (s, v) in values.iter().enumerate() {
        match v {
            Some(v) => current.push((s, *v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn labels_read_like_people_write_them() {
        assert_eq!(fmt_latency(250.0), "250 µs");
        assert_eq!(fmt_latency(1540.0), "1.54 ms");
        assert_eq!(fmt_latency(10_000.0), "10 ms");
        assert_eq!(fmt_latency(2_000_000.0), "2 s");
        assert_eq!(fmt_latency(12.5), "12.5 µs");
        assert_eq!(fmt_percentile(&0.0), "0%");
        assert_eq!(fmt_percentile(&2.0), "99%");
        assert_eq!(fmt_percentile(&4.0), "99.99%");
        assert_eq!(fmt_count(17_500.0), "17.5k");
        assert_eq!(fmt_count(0.0), "0");
    }

    #[test]
    fn spectrum_ends_at_the_maximum() {
        let mut h = crate::stats::latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = spectrum_points(&h);
        assert_eq!(p.last().unwrap().0, 4.0);
        assert_eq!(p.last().unwrap().1, us(h.max()));
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].1), "a spectrum never falls");
    }

    fn events(rows: &[(&str, &str, &str)]) -> crate::report::rundir::Table {
        crate::report::rundir::Table {
            header: ["at_s", "consumer", "kind", "downtime_ms", "lost_during"].map(String::from).to_vec(),
            rows: rows.iter().map(|(at, who, kind)| vec![at.to_string(), who.to_string(), kind.to_string()]).collect(),
        }
    }

    #[test]
    fn outages_are_shaded_at_their_exact_times() {
        // disconnect-loss: two consumers away from 3.0 s to 5.0 s; shaded 3.0 to 5.0, not 3 to 6.
        let t = events(&[
            ("3.001278397", "1", "disconnect"),
            ("3.001873887", "0", "disconnect"),
            ("5.001498675", "1", "resubscribed"),
            ("5.001501115", "0", "resubscribed"),
        ]);
        let open = ["disconnect", "server-kill", "slot-moved", "crash"];
        assert_eq!(spans(&t, 8.0, &open, "resubscribed"), Some(vec![(3.001278397, 5.001501115)]));
        // cluster-node-kill: the node's span apart from the consumers'; one never back lasts to the end.
        let t = events(&[
            ("2.002551689", "1", "node-down"),
            ("2.004234695", "1", "server-kill"),
            ("3.060336051", "1", "node-up"),
            ("3.281824259", "1", "resubscribed"),
            ("7.5", "2", "crash"),
        ]);
        assert_eq!(spans(&t, 6.0, &["node-down"], "node-up"), Some(vec![(2.002551689, 3.060336051)]));
        assert_eq!(spans(&t, 8.0, &open, "resubscribed"), Some(vec![(2.004234695, 3.281824259), (7.5, 8.0)]));
        assert_eq!(spans(&crate::report::rundir::Table::default(), 8.0, &open, "resubscribed"), None);
    }

    #[test]
    fn a_latency_axis_ends_at_a_labelled_round_value() {
        let axis = latency_axis(2.0, 6.47, 1.6); // 100 µs to 2.95 s
        assert!((axis.range.end - 5e6f64.log10()).abs() < 1e-9, "{:?}", axis.range);
        assert_eq!(fmt_log_latency(axis.bold.last().unwrap()), "5 s");
        let axis = latency_axis(1.0, 3.0, 1.6);
        assert_eq!(axis.range.end, 3.0);
        assert_eq!(fmt_log_latency(axis.bold.last().unwrap()), "1 ms");
    }

    /// `n` seconds at 20,000/s, a p99 wandering between 100 and 112 µs, and 3 lost in second 1,234.
    pub(crate) fn seconds(n: usize) -> Vec<crate::rows::TimeseriesRow> {
        (0..n)
            .map(|s| crate::rows::TimeseriesRow {
                second: s as u32,
                target_rate: 20_000.0,
                sent: 20_000 + (s % 7) as u64,
                delivered: 20_000,
                lost: if s == 1_234 { 3 } else { 0 },
                p50_us: Some(60.0),
                p99_us: Some(100.0 + (s % 13) as f64),
                max_us: Some(900.0),
                connected_consumers: 1,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_soaks_timeline_is_no_larger_than_a_ten_minute_one() {
        let ten_minutes = timeline(&RunData::for_tests(seconds(600))).unwrap();
        let ten_hours = timeline(&RunData::for_tests(seconds(36_000))).unwrap();
        assert!(!ten_minutes.contains("a point per"), "600 s are drawn second by second");
        assert!(ten_hours.contains("a point per 60 s"), "36,000 s in 600 columns");
        assert!(
            ten_hours.len() < ten_minutes.len() * 11 / 10,
            "{} bytes for 10 hours against {} for 10 minutes",
            ten_hours.len(),
            ten_minutes.len()
        );
    }

    #[test]
    fn binned_seconds_keep_means_worst_latencies_and_every_loss() {
        let series =
            |look, values: &[Option<f64>]| Series { label: String::new(), colour: BLUE, look, values: values.to_vec() };
        let rates = Panel {
            y_desc: String::new(),
            latency: false,
            series: vec![
                series(Look::Line, &[Some(1.0), Some(3.0), None, None, Some(5.0)]),
                series(Look::Bars { slot: 0, of: 1 }, &[Some(0.0), Some(3.0), Some(1.0), Some(0.0), Some(0.0)]),
            ],
            when_empty: None,
        }
        .binned(2);
        assert_eq!(rates.series[0].values, [Some(2.0), None, Some(5.0)], "a mean of what is known; none: a gap");
        assert_eq!(rates.series[1].values, [Some(3.0), Some(1.0), Some(0.0)], "losses add up");
        let latency = Panel {
            y_desc: String::new(),
            latency: true,
            series: vec![series(Look::Line, &[Some(100.0), Some(900.0), Some(50.0)])],
            when_empty: None,
        }
        .binned(2);
        assert_eq!(latency.series[0].values, [Some(900.0), Some(50.0)], "the worst second");
    }

    #[test]
    fn messages_and_deliveries_have_panels_of_their_own_and_text_reads_at_800_px() {
        let mut run = RunData::for_tests(seconds(5));
        run.summary.consumers = 4;
        let svg = timeline(&run).unwrap();
        assert!(svg.contains("messages per second") && svg.contains("deliveries per second"), "two panels");
        let sizes: Vec<f64> = svg
            .split("font-size=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next()?.trim_end_matches("px").parse().ok())
            .collect();
        assert!(!sizes.is_empty(), "the plot's text has sizes");
        // Shown at 750 of its 1,000 px in an 800 px window: 16 px stays 12 on screen.
        assert!(sizes.iter().all(|&px| px >= 16.0), "{sizes:?}");
    }

    #[test]
    fn gaps_split_lines() {
        let s = segments(&[Some(1.0), None, Some(2.0), Some(3.0), None]);
        assert_eq!(s, vec![vec![(0, 1.0)], vec![(2, 2.0), (3, 3.0)]]);
    }
}
