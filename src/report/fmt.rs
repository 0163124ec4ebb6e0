//! How numbers are written for people: in the terminal table, the HTML
//! pages and on plot labels; and text made safe for a page (`escape`).

/// Messages per second, one form at every size: `0/s`, `0.5/s`, `500/s`, `5.0k/s`,
/// `17.5k/s`, `1.25M/s`.
pub fn rate(v: f64) -> String {
    if v >= 999_500.0 {
        format!("{:.2}M/s", v / 1e6)
    } else if v >= 999.95 {
        format!("{:.1}k/s", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.1}/s")
    }
}

/// A latency given in µs: `227.8 µs`, `1.54 ms`, `2.10 s`.
pub fn latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

/// A latency that may be missing (no message delivered): `–` then, never `0.0 µs`.
pub fn latency_or_dash(us: Option<f64>) -> String {
    us.map_or_else(|| "–".into(), latency)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A CSV value for people: grouped, with fewer decimals the larger it is
/// (3 below 100, 1 below 100,000, none above), trailing zeros dropped:
/// `160,000`, `2.5`, `38.331`, `1,954,546`.
pub fn number(v: f64) -> String {
    if !v.is_finite() || v.abs() >= 1e15 {
        return v.to_string();
    }
    let decimals = match v.abs() {
        a if a < 100.0 => 3,
        a if a < 100_000.0 => 1,
        _ => 0,
    };
    let text = format!("{:.decimals$}", v.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction = fraction.trim_end_matches('0');
    let sign = if v < 0.0 && text.chars().any(|c| c != '0' && c != '.') { "-" } else { "" };
    let whole = thousands(whole.parse().unwrap_or(0));
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// `part` as a percentage of `whole`: `12.503%`, `<0.001%`.
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    let p = 100.0 * part as f64 / whole as f64;
    if p > 0.0 && p < 0.001 {
        "<0.001%".into()
    } else {
        format!("{}%", number((p * 1000.0).round() / 1000.0))
    }
}

/// A share of a CPU (or of anything) in percent, to one decimal: `49.8%`, `0.4%`, `100%`.
pub fn percent(p: f64) -> String {
    let text = format!("{p:.1}");
    format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
}

/// Bytes as people read them, in powers of 1,000 with three digits:
/// `512 B`, `10.2 MB`, `1.50 GB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 999.5 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    match (unit, v) {
        (0, _) => format!("{n} B"),
        (_, v) if v >= 99.95 => format!("{v:.0} {}", units[unit]),
        (_, v) if v >= 9.995 => format!("{v:.1} {}", units[unit]),
        (_, v) => format!("{v:.2} {}", units[unit]),
    }
}

/// A duration for a sentence, to the precision a person reads: whole
/// seconds from a minute up (`2m5s`), milliseconds below (`30s`, `1s500ms`,
/// `250ms`), so that 29.99999986 s reads `30s`, not `29s999ms999us860ns`.
pub fn duration(d: std::time::Duration) -> String {
    let rounded = if d >= std::time::Duration::from_secs(60) {
        std::time::Duration::from_secs(d.as_secs() + u64::from(d.subsec_millis() >= 500))
    } else if d >= std::time::Duration::from_millis(1) {
        std::time::Duration::from_millis((d.as_secs_f64() * 1000.0).round() as u64)
    } else {
        std::time::Duration::from_micros((d.as_secs_f64() * 1e6).round() as u64)
    };
    humantime::format_duration(rounded).to_string().replace(' ', "")
}

/// `1 consumer`, `4 consumers`.
pub fn plural(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{} {what}s", thousands(n)),
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(160000.0), "160,000");
        assert_eq!(number(38.33058848714777), "38.331");
        assert_eq!(number(1_954_545.663), "1,954,546");
        assert_eq!(number(17_498.26), "17,498.3");
        assert_eq!(number(-2.0), "-2");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(pct(20_004, 160_000), "12.503%");
        assert_eq!(pct(1, 1_000_000), "<0.001%");
        assert_eq!(pct(0, 0), "0%");
        assert_eq!(plural(1u32, "channel"), "1 channel");
        assert_eq!(plural(4u32, "consumer"), "4 consumers");
        assert_eq!(latency(227.8), "227.8 µs");
        assert_eq!(latency(1540.0), "1.54 ms");
        assert_eq!(rate(17_498.0), "17.5k/s");
        assert_eq!(rate(5000.0), "5.0k/s");
        assert_eq!(rate(999.96), "1.0k/s");
        assert_eq!(rate(500.0), "500/s");
        assert_eq!(rate(0.5), "0.5/s");
        assert_eq!(rate(1_250_000.0), "1.25M/s");
        assert_eq!(pct(0, 160_000), "0%");
    }

    #[test]
    fn cpu_bytes_and_durations_read_as_people_say_them() {
        assert_eq!(percent(49.835), "49.8%");
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(0.04), "0%");
        assert_eq!(bytes(10_248_808), "10.2 MB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_500_000_000), "1.50 GB");
        assert_eq!(bytes(999_999), "1.00 MB");
        assert_eq!(bytes(123_456), "123 kB");
        let d = std::time::Duration::from_nanos(29_999_999_860);
        assert_eq!(duration(d), "30s");
        assert_eq!(duration(std::time::Duration::from_millis(1500)), "1s500ms");
        assert_eq!(duration(std::time::Duration::from_millis(125_400)), "2m5s");
        assert_eq!(duration(std::time::Duration::from_micros(250)), "250us");
        assert_eq!(plural(1u32, "stage"), "1 stage");
    }
}
