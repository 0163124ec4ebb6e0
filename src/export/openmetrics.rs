//! OpenMetrics text, for scrapers that ask for it (Prometheus does), written
//! by `prometheus-client` (the Prometheus project's Rust client) from
//! [`super::families`] at scrape time.

use super::{Family, Kind, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The Content-Type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `families` as OpenMetrics, `# EOF` included.
pub fn encode(families: Vec<Family>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's metrics, as a collector the registry asks once.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let (kind, unit) = match f.kind {
                Kind::Counter => (MetricType::Counter, None),
                Kind::Gauge => (MetricType::Gauge, None),
                Kind::Histogram => (MetricType::Histogram, f.unit.map(|u| Unit::Other(u.to_string()))),
            };
            // The encoder appends the unit to the name: give it the name without.
            let name = match f.unit {
                Some(u) => f.name.strip_suffix(&format!("_{u}")).unwrap_or(f.name),
                None => f.name,
            };
            let help = f.help.strip_suffix('.').unwrap_or(f.help);
            let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
            for s in &f.samples {
                let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut series = metric.encode_family(&labels)?;
                match (&s.value, f.kind) {
                    // Whole counts read as integers, as in the text format.
                    (&Value::Number(v), Kind::Counter) if whole(v) => {
                        series.encode_counter::<NoLabelSet, _, f64>(&(v as u64), None)?
                    }
                    (Value::Number(v), Kind::Counter) => series.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    (&Value::Number(v), _) if whole(v) => series.encode_gauge(&(v as i64))?,
                    (Value::Number(v), _) => series.encode_gauge(v)?,
                    (Value::Histogram { buckets, sum, count }, _) => {
                        // This encoder writes the overflow bucket as `+Inf` when its bound is f64::MAX.
                        let buckets: Vec<(f64, u64)> =
                            buckets.iter().map(|&(le, n)| (if le.is_finite() { le } else { f64::MAX }, n)).collect();
                        series.encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// A value that is a whole number a u64 (and an i64) holds exactly.
fn whole(v: f64) -> bool {
    v.fract() == 0.0 && (0.0..9.0e15).contains(&v)
}
