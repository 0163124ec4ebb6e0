//! User input quoted back in messages: a value is shown as typed, but never
//! more than a line of it, so a 120 KB expression or path does not come back
//! as a 120 KB error, and its control characters are shown, never obeyed
//! by the terminal.

/// Longest piece of a value that a message quotes, in characters.
pub const QUOTE_MAX: usize = 60;

/// `'value'`, or `'its first characters…' (N bytes)` when it is longer than [`QUOTE_MAX`].
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        None => format!("'{}'", printable(s)),
        Some((cut, _)) => format!("'{}…' ({} bytes)", printable(&s[..cut]), s.len()),
    }
}

/// The value itself, cut like [`quote`] but without the quotes (for text that quotes it already).
pub fn shorten(s: &str) -> String {
    cut(s, QUOTE_MAX)
}

/// The first `max` characters of `s`, and how long it was when that is not all of it.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => printable(s),
        Some((at, _)) => format!("{}… ({} bytes)", printable(&s[..at]), s.len()),
    }
}

/// `s` with its control characters escaped (`\u{1b}`), so that a terminal
/// shows them instead of obeying them (an escape sequence could retitle or
/// clear it). New lines and tabs are kept.
pub fn printable(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_short_values_are_not() {
        assert_eq!(quote("p99_us<1"), "'p99_us<1'");
        let long = "é".repeat(100_000);
        let q = quote(&long);
        assert!(q.chars().count() < 100 && q.ends_with("(200000 bytes)"), "{q}");
        assert_eq!(shorten("abc"), "abc");
        assert!(shorten(&"x".repeat(500)).starts_with(&"x".repeat(QUOTE_MAX)));
        assert_eq!(printable("x\u{1b}]0;pwned\u{7}\n"), "x\\u{1b}]0;pwned\\u{7}\n");
        assert_eq!(printable("plain\ttext"), "plain\ttext");
    }
}
