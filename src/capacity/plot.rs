//! `capacity.svg`: latency percentiles against the offered rate (log axes),
//! with the SLO's latency ceilings and the maximum found marked, and beside
//! it the rate delivered against the rate offered. One colour per transport.

use super::slo::Bound;
use super::{CapacityRow, Searched};
use crate::report::plots::{
    decades, draw_curve, fmt_count, fmt_log_latency, fmt_log_rate, latency_axis, legend, log_axis, plot_error,
    run_colour, Chart, Curve, Ticked, FONT, GREY, RED, WIDTH,
};
use anyhow::Result;
use plotters::prelude::*;

const HEIGHT: u32 = 520;

/// A percentile's curve: its label, its column, dashed, its width.
type Percentile = (&'static str, fn(&CapacityRow) -> f64, bool, u32);

/// One value per rate tried (the worst of its tries, by `worse`), in rate order.
fn per_rate(rows: &[&CapacityRow], value: impl Fn(&CapacityRow) -> f64, worse: fn(f64, f64) -> f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut sorted: Vec<&&CapacityRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    for r in sorted {
        let v = value(r);
        match points.last_mut() {
            Some(last) if last.0 == r.rate => last.1 = worse(last.1, v),
            _ => points.push((r.rate, v)),
        }
    }
    points
}

/// The rows of a search that measured something (a halted step may not have).
fn measured(s: &Searched) -> Vec<&CapacityRow> {
    s.steps.iter().map(|st| &st.row).filter(|r| r.rate > 0.0).collect()
}

/// Draws `capacity.svg` for one or more searches.
pub fn capacity_svg(searches: &[Searched], ceilings: &[Bound]) -> Result<String> {
    let several = searches.len() > 1;
    let name =
        |i: usize, what: &str| if several { format!("{} {what}", searches[i].transport) } else { what.to_string() };
    let rows: Vec<Vec<&CapacityRow>> = searches.iter().map(measured).collect();
    let all_rates: Vec<f64> = rows.iter().flatten().map(|r| r.rate).collect();
    let (rate_lo, rate_hi) = match all_rates
        .iter()
        .copied()
        .fold(None, |a: Option<(f64, f64)>, r| Some(a.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r)))))
    {
        Some((lo, hi)) => ((lo / 1.3).log10(), (hi * 1.3).log10()),
        None => (2.0, 4.0),
    };
    let x_axis = || log_axis(rate_lo, rate_hi);

    // Latency curves, as µs (placed on the log axis when drawn).
    let mut latency: Vec<Curve> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let colour = run_colour(i);
        let spec: [Percentile; 3] =
            // A step with no deliveries has no latency: 0 here, left out below.
            [
                ("p50", |r| r.p50_us.unwrap_or(0.0), true, 2),
                ("p99", |r| r.p99_us.unwrap_or(0.0), false, 2),
                ("p99.9", |r| r.p999_us.unwrap_or(0.0), false, 1),
            ];
        for (label, value, dashed, width) in spec {
            let points = per_rate(r, value, f64::max).into_iter().filter(|p| p.1 > 0.0).map(|(x, y)| (x.log10(), y));
            latency.push(Curve { label: name(i, label), colour, dashed, width, points: points.collect() });
        }
    }
    // The latency axis spans the curves and the SLO's ceilings.
    let span = latency.iter().flat_map(|c| c.points.iter().copied()).chain(ceilings.iter().map(|b| (0.0, b.value)));
    let span = Curve { label: String::new(), colour: RED, dashed: false, width: 1, points: span.collect() };
    let (lat_lo, lat_hi) = decades(std::slice::from_ref(&span), 0.25);
    let mut labels: Vec<String> = latency.iter().map(|c| c.label.clone()).collect();
    labels.extend(ceilings.iter().map(|b| format!("SLO {}", b.label())));
    let maxima_found = searches.iter().enumerate().filter_map(|(i, s)| s.found.max_rate.map(|m| (i, m)));
    labels.extend(maxima_found.map(|(i, m)| name(i, &format!("max: {}/s", fmt_count(m)))));
    labels.extend(["step passed".to_string(), "step failed".to_string()]);
    let legend_box = LegendBox::upper_left(&labels, (WIDTH * 54 / 100, HEIGHT));
    let mut lines: Vec<Vec<(f64, f64)>> = latency.iter().map(|c| c.points.clone()).collect();
    lines.extend(ceilings.iter().map(|b| vec![(rate_lo, b.value), (rate_hi, b.value)]));
    let lat_hi = legend_box.clear_top((rate_lo, rate_hi), (lat_lo, lat_hi), &lines);

    // Delivered against offered, messages per second.
    let delivered: Vec<Vec<(f64, f64)>> =
        rows.iter().map(|r| per_rate(r, CapacityRow::delivered_messages_rate, f64::min)).collect();
    let ys = delivered.iter().flatten().map(|p| p.1).chain(all_rates.iter().copied()).filter(|&y| y > 0.0);
    let (dlo, dhi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (del_lo, del_hi) = if dlo <= dhi { ((dlo / 1.5).log10(), (dhi * 1.5).log10()) } else { (rate_lo, rate_hi) };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let body = root
            .titled("Capacity: latency and delivered rate against the offered rate", (FONT, 20))
            .map_err(plot_error)?;
        let (left, right) = body.split_horizontally(WIDTH * 54 / 100);

        let mut chart = new_chart(&left, x_axis(), latency_axis(lat_lo, lat_hi, 2.5))?;
        chart
            .configure_mesh()
            .x_desc("offered rate, msg/s (log scale)")
            .y_desc("latency (log scale)")
            .x_label_formatter(&fmt_log_rate)
            .y_label_formatter(&fmt_log_latency)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(plot_error)?;
        let to_y = |v: f64| v.log10().clamp(lat_lo, lat_hi);
        for c in &latency {
            let points = c.points.iter().map(|&(x, y)| (x, to_y(y))).collect();
            draw_curve(&mut chart, &Curve { label: c.label.clone(), points, ..*c })?;
        }
        for b in ceilings {
            let y = to_y(b.value);
            let points = vec![(rate_lo, y), (rate_hi, y)];
            draw_curve(
                &mut chart,
                &Curve { label: format!("SLO {}", b.label()), colour: RED, dashed: true, width: 2, points },
            )?;
        }
        for (i, r) in rows.iter().enumerate() {
            markers(&mut chart, r, run_colour(i), |row| row.p99_us.filter(|&p| p > 0.0).map(to_y))?;
        }
        maxima(&mut chart, searches, (lat_lo, lat_hi), &name)?;
        marker_legend(&mut chart)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;

        let mut chart = new_chart(&right, x_axis(), log_axis(del_lo, del_hi))?;
        chart
            .configure_mesh()
            .x_desc("offered rate, msg/s (log scale)")
            .y_desc("delivered, msg/s (log scale)")
            .x_label_formatter(&fmt_log_rate)
            .y_label_formatter(&fmt_log_rate)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(plot_error)?;
        let diagonal = vec![(rate_lo, rate_lo.clamp(del_lo, del_hi)), (rate_hi, rate_hi.clamp(del_lo, del_hi))];
        draw_curve(
            &mut chart,
            &Curve { label: "offered".into(), colour: GREY, dashed: true, width: 1, points: diagonal },
        )?;
        let to_d = |v: f64| v.log10().clamp(del_lo, del_hi);
        for (i, points) in delivered.iter().enumerate() {
            let points = points.iter().filter(|p| p.1 > 0.0).map(|&(x, y)| (x.log10(), to_d(y))).collect();
            draw_curve(
                &mut chart,
                &Curve { label: name(i, "delivered"), colour: run_colour(i), dashed: false, width: 2, points },
            )?;
            markers(&mut chart, &rows[i], run_colour(i), |row| {
                let v = row.delivered_messages_rate();
                (v > 0.0).then(|| to_d(v))
            })?;
        }
        maxima(&mut chart, searches, (del_lo, del_hi), &|_, _| String::new())?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Where the latency chart's legend (upper left) sits, as fractions of the
/// plot's width and height, so the axis can leave room for it.
struct LegendBox {
    width: f64,
    height: f64,
}

impl LegendBox {
    /// Pixels of a legend row and per label character at 14 px, of the
    /// swatch before the text, and between the box, its corner and the data
    /// (as plotters draws them: 7 rows made a box 137 px high).
    const ROW_PX: f64 = 20.0;
    const CHAR_PX: f64 = 7.5;
    const SWATCH_PX: f64 = 45.0;
    const GAP_PX: f64 = 16.0;

    /// The box of `labels` in a chart drawn by `new_chart` on an area of `area` pixels.
    fn upper_left(labels: &[String], area: (u32, u32)) -> LegendBox {
        let plot_w = f64::from(area.0) - 10.0 - 16.0 - 72.0;
        let plot_h = f64::from(area.1) - 36.0 - 10.0 - 44.0;
        let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
        let width = (Self::SWATCH_PX + chars * Self::CHAR_PX + Self::GAP_PX) / plot_w;
        let height = (labels.len() as f64 * Self::ROW_PX + Self::GAP_PX) / plot_h;
        LegendBox { width: width.min(1.0), height: height.min(0.9) }
    }

    /// The top of a log latency axis (log10 µs) at least `hi`, high enough
    /// that the box covers no line (points `x` log10 msg/s, `y` µs): the
    /// points under the box's width and, where a segment leaves it, the
    /// segment's height at the box's edge.
    fn clear_top(&self, (x_lo, x_hi): (f64, f64), (lo, hi): (f64, f64), lines: &[Vec<(f64, f64)>]) -> f64 {
        let edge = x_lo + self.width * (x_hi - x_lo);
        let mut top = f64::MIN;
        for line in lines {
            let logged: Vec<(f64, f64)> = line.iter().filter(|p| p.1 > 0.0).map(|&(x, y)| (x, y.log10())).collect();
            for (i, &(x, y)) in logged.iter().enumerate() {
                if x <= edge {
                    top = top.max(y);
                }
                if let Some(&(nx, ny)) = logged.get(i + 1).filter(|n| x <= edge && n.0 > edge) {
                    top = top.max(y + (ny - y) * (edge - x) / (nx - x));
                }
            }
        }
        if top <= lo {
            return hi;
        }
        hi.max(lo + (top - lo) / (1.0 - self.height))
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn new_chart<'a, 'b>(area: &'a Area<'b>, x: Ticked, y: Ticked) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(area)
        .margin(10)
        .margin_right(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(plot_error)
}

/// A dot per step that passed, a cross per step that did not, at `y(row)`.
fn markers<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    rows: &[&CapacityRow],
    colour: RGBColor,
    y: impl Fn(&CapacityRow) -> Option<f64>,
) -> Result<()> {
    let at = |r: &&CapacityRow| y(r).map(|y| (r.rate.log10(), y));
    let passed = rows.iter().filter(|r| r.passed).filter_map(at).map(|p| Circle::new(p, 3, colour.filled()));
    chart.draw_series(passed).map_err(plot_error)?;
    let failed = rows.iter().filter(|r| !r.passed).filter_map(at).map(|p| Cross::new(p, 4, colour.stroke_width(2)));
    chart.draw_series(failed).map_err(plot_error)?;
    Ok(())
}

/// Legend entries for the markers.
fn marker_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<()> {
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
        .map_err(plot_error)?
        .label("step passed")
        .legend(|(x, y)| Circle::new((x + 11, y), 3, GREY.filled()));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
        .map_err(plot_error)?
        .label("step failed")
        .legend(|(x, y)| Cross::new((x + 11, y), 4, GREY.stroke_width(2)));
    Ok(())
}

/// A vertical line at each search's maximum, labelled by `name` (unlabelled if empty).
fn maxima<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    searches: &[Searched],
    (lo, hi): (f64, f64),
    name: &dyn Fn(usize, &str) -> String,
) -> Result<()> {
    for (i, s) in searches.iter().enumerate() {
        let Some(max) = s.found.max_rate else { continue };
        let x = max.log10();
        let label = name(i, &format!("max {}/s", fmt_count(max)));
        let label = if label.is_empty() { label } else { label.replacen(" max", ": max", 1) };
        let curve = Curve { label, colour: run_colour(i), dashed: true, width: 1, points: vec![(x, lo), (x, hi)] };
        draw_curve(chart, &curve)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The legend's box as a fraction of the plot, from the point's height.
    fn fraction(lo: f64, hi: f64, us: f64) -> f64 {
        (us.log10() - lo) / (hi - lo)
    }

    #[test]
    fn the_latency_axis_leaves_the_legend_room_over_the_curves_it_would_cover() {
        // The committed capacity-pubsub search: p99.9 of 2.47 ms at 10k
        // msg/s sat under the legend of 7 entries on an axis up to 20 ms.
        let labels: Vec<String> = ["p50", "p99", "p99.9", "SLO p99 < 2 ms", "max 320k/s", "step passed", "step failed"]
            .map(String::from)
            .into();
        let legend = LegendBox::upper_left(&labels, (WIDTH * 54 / 100, HEIGHT));
        assert!((0.25..0.45).contains(&legend.height), "{}", legend.height);
        let (x_lo, x_hi) = ((10_000f64 / 1.3).log10(), (640_000f64 * 1.3).log10());
        let p999 = vec![(4.0, 2470.0), (4.3, 2290.0), (5.5, 7040.0), (5.8, 4070.0)];
        let hi = legend.clear_top((x_lo, x_hi), (1.0, 4.1), std::slice::from_ref(&p999));
        for (x, us) in p999 {
            let under = (x - x_lo) / (x_hi - x_lo) <= legend.width;
            assert!(!under || fraction(1.0, hi, us) <= 1.0 - legend.height, "{us} µs at {x}: axis to {hi}");
        }
        assert!(hi > 4.1, "{hi}");
        // Nothing under the box: the axis stays as it was.
        let right = vec![(5.5, 7040.0), (5.8, 9000.0)];
        assert_eq!(legend.clear_top((x_lo, x_hi), (1.0, 4.1), &[right]), 4.1);
        // A segment that leaves the box counts by its height at the box's edge.
        let edge = x_lo + legend.width * (x_hi - x_lo);
        let rising = vec![(x_lo, 10.0), (x_lo + 2.0 * (edge - x_lo), 1e5)];
        let hi = legend.clear_top((x_lo, x_hi), (1.0, 2.0), &[rising]);
        let at_edge = (3.0 - 1.0) / (hi - 1.0); // halfway in log: 1,000 µs
        assert!((at_edge - (1.0 - legend.height)).abs() < 1e-9, "{hi}");
    }

    #[test]
    fn a_rate_axis_labels_what_is_inside_it() {
        let t = log_axis(2.5, 4.2);
        assert!(t.bold.iter().all(|v| (2.5..=4.2).contains(v)), "{:?}", t.bold);
        let labels: Vec<String> = t.bold.iter().map(fmt_log_rate).collect();
        assert_eq!(labels, ["500", "1k", "2k", "5k", "10k"]);
        // Narrower than from one tick to the next: the light ones are labelled.
        let t = log_axis(2.45, 2.6);
        assert!(!t.bold.is_empty(), "{:?}", t.light);
    }
}
