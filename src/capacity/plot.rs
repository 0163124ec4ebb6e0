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
    let (lat_lo, lat_hi) = decades(&[span], 0.25);

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
