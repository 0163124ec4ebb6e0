//! How numbers are written for people: in the terminal table, the HTML
//! pages and on plot labels.

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

/// `1 consumer`, `4 consumers`.
pub fn plural(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{} {what}s", thousands(n)),
    }
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
}
