//! A sweep's pictures and page: `sweep.svg` (delivered rate, p50/p99 and
//! the server's CPU against the varied key, one curve per value of a second
//! key) and `sweep.html`, both from `sweep.csv`'s rows alone, in the style
//! of the run and capacity plots.

use super::fmt::{escape, number};
use super::html::{head, inline_svg, table};
use super::plots::{
    decades, draw_curve, fmt_count, fmt_log_latency, fmt_log_rate, latency_axis, legend, linear_axis, log_axis,
    plot_error, run_colour, Chart, Curve, Ticked, FONT, WIDTH,
};
use crate::rows::SweepRow;
use anyhow::Result;
use plotters::prelude::*;
use std::fmt::Write;

const PANEL_HEIGHT: u32 = 320;
/// An axis is logarithmic when its values span this factor or more (two decades).
const LOG_FROM: f64 = 100.0;

/// The x axis: log10 of the key's values when they span decades, else linear from 0.
struct XAxis {
    log: bool,
    ticked: Ticked,
}

impl XAxis {
    fn of(values: &[f64]) -> XAxis {
        let lo = values.iter().copied().fold(f64::MAX, f64::min);
        let hi = values.iter().copied().fold(f64::MIN, f64::max);
        if lo > 0.0 && hi / lo >= LOG_FROM {
            XAxis { log: true, ticked: log_axis((lo / 1.3).log10(), (hi * 1.3).log10()) }
        } else {
            let hi = if hi > 0.0 { hi * 1.05 } else { 1.0 };
            XAxis { log: false, ticked: linear_axis(hi) }
        }
    }

    fn at(&self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    fn label(&self, v: &f64) -> String {
        if self.log {
            fmt_log_rate(v)
        } else {
            fmt_count(*v)
        }
    }
}

/// The rows of each value of the second key (one group without one), each in the first key's order.
fn groups(rows: &[SweepRow]) -> Vec<(String, Vec<&SweepRow>)> {
    let mut out: Vec<(Option<f64>, Vec<&SweepRow>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(v, _)| *v == r.value2) {
            Some((_, g)) => g.push(r),
            None => out.push((r.value2, vec![r])),
        }
    }
    out.into_iter()
        .map(|(v, mut g)| {
            g.sort_by(|a, b| a.value.total_cmp(&b.value));
            let label = v.map_or(String::new(), |v| format!("{}={}", g[0].key2, crate::scenario::fmt_value(v)));
            (label, g)
        })
        .collect()
}

/// One panel's curves: for each group, `value(row)` against the key.
fn curves(
    groups: &[(String, Vec<&SweepRow>)],
    x: &XAxis,
    what: &str,
    dashed: bool,
    value: fn(&SweepRow) -> Option<f64>,
) -> Vec<Curve> {
    groups
        .iter()
        .enumerate()
        .map(|(i, (label, rows))| {
            let points = rows.iter().filter_map(|r| value(r).map(|y| (x.at(r.value), y))).collect();
            let label = if label.is_empty() { what.to_string() } else { format!("{label} {what}") };
            Curve { label, colour: run_colour(i), dashed, width: 2, points }
        })
        .collect()
}

/// Draws `sweep.svg`: three panels, one above the other.
pub fn sweep_svg(rows: &[SweepRow]) -> Result<String> {
    let key = rows.first().map_or("value", |r| r.key.as_str());
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let x = XAxis::of(&values);
    let groups = groups(rows);
    let delivered = curves(&groups, &x, "delivered", false, |r| Some(r.delivery_rate).filter(|&v| v > 0.0));
    let mut latency = curves(&groups, &x, "p50", true, |r| r.p50_us.filter(|&v| v > 0.0));
    latency.extend(curves(&groups, &x, "p99", false, |r| r.p99_us.filter(|&v| v > 0.0)));
    let cpu = curves(&groups, &x, "server CPU", false, |r| r.server_cpu_pct);
    let x_desc = format!("{key}{}", if x.log { " (log scale)" } else { "" });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * 3 + 40)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let body = root.titled(&format!("Sweep: against {key}"), (FONT, 20)).map_err(plot_error)?;
        let panels = body.split_evenly((3, 1));
        // Delivered deliveries a second: log when they span decades.
        let (lo, hi) = span(&delivered);
        let log_y = lo > 0.0 && hi / lo >= LOG_FROM;
        let y = if log_y { log_axis((lo / 1.5).log10(), (hi * 1.5).log10()) } else { linear_axis(hi.max(1.0) * 1.1) };
        let mut chart = panel(&panels[0], &x, y)?;
        mesh(&mut chart, &x, &x_desc, if log_y { "deliveries/s (log scale)" } else { "deliveries/s" }, &|v: &f64| {
            fmt_count(if log_y { 10f64.powf(*v) } else { *v })
        })?;
        for c in &delivered {
            let points = c.points.iter().map(|&(px, py)| (px, if log_y { py.log10() } else { py })).collect();
            drawn(&mut chart, &Curve { label: c.label.clone(), points, ..*c })?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        // Latency, log.
        let (lat_lo, lat_hi) = decades(&latency, 0.25);
        let mut chart = panel(&panels[1], &x, latency_axis(lat_lo, lat_hi, 2.5))?;
        mesh(&mut chart, &x, &x_desc, "latency (log scale)", &fmt_log_latency)?;
        for c in &latency {
            let points = c.points.iter().map(|&(px, py)| (px, py.log10().clamp(lat_lo, lat_hi))).collect();
            drawn(&mut chart, &Curve { label: c.label.clone(), points, ..*c })?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        // The server's CPU, % of one core.
        let (_, cpu_hi) = span(&cpu);
        let mut chart = panel(&panels[2], &x, linear_axis(cpu_hi.max(100.0) * 1.05))?;
        mesh(&mut chart, &x, &x_desc, "server CPU, %", &|v: &f64| format!("{v:.0}"))?;
        for c in &cpu {
            drawn(&mut chart, c)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The lowest and highest y of `curves` (0, 0 without a point).
fn span(curves: &[Curve]) -> (f64, f64) {
    let ys = curves.iter().flat_map(|c| c.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel<'a, 'b>(area: &'a Area<'b>, x: &XAxis, y: Ticked) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(area)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x.ticked.clone(), y)
        .map_err(plot_error)
}

fn mesh<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    x: &XAxis,
    x_desc: &str,
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<()> {
    let x_label = |v: &f64| x.label(v);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&x_label)
        .y_label_formatter(y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(plot_error)
}

/// A curve with a dot at each point (a sweep has few points, each a run).
fn drawn<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, c: &Curve) -> Result<()> {
    draw_curve(chart, c)?;
    let dots = c.points.iter().map(|&p| Circle::new(p, 3, c.colour.filled()));
    chart.draw_series(dots).map_err(plot_error)?;
    Ok(())
}

/// `sweep.html`: what was swept, the plot, the table of points, a link to each point's run.
pub fn sweep_page(rows: &[SweepRow], title: &str, how: &str, svg: &str) -> String {
    let mut out = head(&format!("eventbench · sweep · {title}"));
    let _ = writeln!(out, "<h1>Sweep: {}</h1>", escape(title));
    let _ = writeln!(out, "<p>{}</p>", escape(how));
    let _ = writeln!(out, "<figure>{}</figure>", inline_svg(svg));
    let two = rows.iter().any(|r| r.value2.is_some());
    let first = rows.first().map_or("value".to_string(), |r| r.key.clone());
    let mut header: Vec<String> = vec![first];
    if two {
        header.push(rows[0].key2.clone());
    }
    let capacity = rows.iter().any(|r| r.max_rate.is_some());
    let figures =
        ["status", "target msg/s", "max msg/s", "deliveries/s", "p50", "p99", "lost", "server CPU %", "limit", "run"];
    header.extend(figures.iter().filter(|f| capacity || **f != "max msg/s").map(|s| s.to_string()));
    let latency = |v: Option<f64>| v.map_or("–".into(), super::fmt::latency);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![crate::scenario::fmt_value(r.value)];
            if two {
                c.push(r.value2.map_or(String::new(), crate::scenario::fmt_value));
            }
            c.push(r.status.to_string());
            c.push(number(r.target_rate.round()));
            if capacity {
                c.push(r.max_rate.map_or("–".into(), |m| number(m.round())));
            }
            c.push(number(r.delivery_rate.round()));
            c.push(latency(r.p50_us));
            c.push(latency(r.p99_us));
            c.push(r.lost.to_string());
            c.push(r.server_cpu_pct.map_or("–".into(), |v| format!("{v:.1}")));
            c.push(r.limit.as_str().to_string());
            c.push(r.dir.clone());
            c
        })
        .collect();
    table(&mut out, &header, &cells, |i| rows[i].lost > 0);
    out.push_str("<ul class=\"files\">\n<li><a href=\"sweep.csv\">sweep.csv</a></li>\n");
    for r in rows {
        let _ = writeln!(out, "<li><a href=\"{0}/report.html\">{0}</a></li>", escape(&r.dir));
    }
    out.push_str("</ul>\n</main>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64, value2: Option<f64>, delivery_rate: f64) -> SweepRow {
        SweepRow {
            key: "consumers".into(),
            value,
            key2: if value2.is_some() { "channels".into() } else { String::new() },
            value2,
            delivery_rate,
            p50_us: Some(100.0),
            p99_us: Some(900.0),
            server_cpu_pct: Some(12.0),
            dir: format!("consumers-{value}"),
            ..SweepRow::default()
        }
    }

    #[test]
    fn decades_make_a_log_axis_and_a_second_key_makes_curves() {
        assert!(XAxis::of(&[1.0, 10.0, 100.0, 1000.0]).log);
        assert!(!XAxis::of(&[1.0, 2.0, 4.0]).log);
        assert!(!XAxis::of(&[0.0, 1000.0]).log, "0 has no place on a log axis");
        let rows =
            [row(1.0, Some(1.0), 1e3), row(10.0, Some(1.0), 1e4), row(1.0, Some(5.0), 1e3), row(10.0, Some(5.0), 1e4)];
        let g = groups(&rows);
        assert_eq!(
            g.iter().map(|(l, r)| (l.as_str(), r.len())).collect::<Vec<_>>(),
            [("channels=1", 2), ("channels=5", 2)]
        );
        let svg = sweep_svg(&rows).unwrap();
        assert!(svg.contains("channels=5 p99") && svg.contains("server CPU"), "{svg}");
        let page = sweep_page(&rows, "fanout", "at 1,000 msg/s", &svg);
        assert!(page.contains("consumers-10/report.html") && page.contains("<svg"), "{page}");
    }
}
