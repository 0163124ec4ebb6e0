//! The Prometheus text format (0.0.4), for scrapers that do not ask for
//! OpenMetrics (curl, `promtool check metrics`), written by the `prometheus`
//! crate's encoder from [`super::families`].

use super::{Family, Kind, Value};
use prometheus::proto::{self, MetricType};

/// The Content-Type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `families` in the text format.
pub fn encode(families: &[Family]) -> Result<String, prometheus::Error> {
    let families: Vec<proto::MetricFamily> = families.iter().filter(|f| !f.samples.is_empty()).map(family).collect();
    prometheus::TextEncoder::new().encode_to_string(&families)
}

fn family(f: &Family) -> proto::MetricFamily {
    let mut out = proto::MetricFamily::default();
    // A counter's samples carry `_total` in this format; its family name does too.
    out.set_name(match f.kind {
        Kind::Counter => format!("{}_total", f.name),
        _ => f.name.to_string(),
    });
    out.set_help(f.help.to_string());
    out.set_field_type(match f.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    });
    let metrics = f
        .samples
        .iter()
        .map(|s| {
            let mut m = proto::Metric::default();
            m.set_label(
                s.labels
                    .iter()
                    .map(|(k, v)| {
                        let mut l = proto::LabelPair::default();
                        l.set_name(k.to_string());
                        l.set_value(v.clone());
                        l
                    })
                    .collect(),
            );
            match (&s.value, f.kind) {
                (Value::Number(v), Kind::Counter) => {
                    let mut c = proto::Counter::default();
                    c.set_value(*v);
                    m.set_counter(c);
                }
                (Value::Number(v), _) => {
                    let mut g = proto::Gauge::default();
                    g.set_value(*v);
                    m.set_gauge(g);
                }
                (Value::Histogram { buckets, sum, count }, _) => {
                    let mut h = proto::Histogram::default();
                    let mut below = 0;
                    // The encoder adds `+Inf` (the count) itself.
                    h.set_bucket(
                        buckets
                            .iter()
                            .filter(|(le, _)| le.is_finite())
                            .map(|&(le, n)| {
                                below += n;
                                let mut b = proto::Bucket::default();
                                b.set_upper_bound(le);
                                b.set_cumulative_count(below);
                                b
                            })
                            .collect(),
                    );
                    h.set_sample_sum(*sum);
                    h.set_sample_count(*count);
                    m.set_histogram(h);
                }
            }
            m
        })
        .collect();
    out.set_metric(metrics);
    out
}
