//! `--assert EXPR`: pass/fail gates over the summary's columns, for CI.
//!
//! An assertion compares two arithmetic expressions over numbers and numeric
//! `summary.csv` columns: `p99_us<2000`, `lost==0`,
//! `delivery_rate>=0.99*target_rate`. It is parsed (and its column names
//! checked) before the run, so a typo fails at once instead of after a long run.

use crate::rows::SummaryRow;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The accepted form, for messages.
pub const FORM: &str =
    "expected COLUMN OP VALUE with OP one of < <= > >= == !=, e.g. p99_us<2000 or delivery_rate>=0.99*target_rate";

/// The longest assertion accepted (it is written back in messages and scenario.toml).
pub const MAX_LEN: usize = 1000;

/// One gate, e.g. `p99_us<2000`.
#[derive(Debug, Clone)]
pub struct Assertion {
    text: String,
    left: Side,
    op: Op,
    right: Side,
}

#[derive(Debug, Clone)]
struct Side {
    text: String,
    expr: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone)]
enum Expr {
    Number(f64),
    Column(String),
    Neg(Box<Expr>),
    Binary(Box<Expr>, u8, Box<Expr>),
}

/// The outcome of one assertion on one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    /// `p99_us<2000 (p99_us = 2345.6)`: the assertion and the measured values.
    pub line: String,
}

impl PartialEq for Assertion {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The numeric columns of `summary.csv` and their values in `row`; a
/// true/false column counts as 1/0 (`sustained==1`, `harness_limited==0`);
/// an empty one (`p99_us` of a run that delivered nothing) is null, and
/// fails every comparison.
fn numeric_columns(row: &SummaryRow) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(row) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::Bool(b) => Some((k, serde_json::Value::from(u8::from(b)))),
                v if v.is_number() || v.is_null() => Some((k, v)),
                _ => None,
            })
            .collect(),
        _ => serde_json::Map::new(),
    }
}

impl FromStr for Assertion {
    type Err = String;

    fn from_str(s: &str) -> Result<Assertion, String> {
        let text: String = s.split_whitespace().collect();
        if text.len() > MAX_LEN {
            return Err(format!("{} is longer than {MAX_LEN} characters; {FORM}", crate::text::quote(s)));
        }
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)];
        let Some((at, token, op)) = text
            .char_indices()
            .find_map(|(i, _)| ops.iter().find(|(t, _)| text[i..].starts_with(t)).map(|&(t, op)| (i, t, op)))
        else {
            let hint = if text.contains('=') { " (use == to compare)" } else { "" };
            return Err(format!("{} has no comparison{hint}; {FORM}", crate::text::quote(s)));
        };
        let (left, right) = (&text[..at], &text[at + token.len()..]);
        let columns = numeric_columns(&SummaryRow::default());
        let side = |part: &str| -> Result<Side, String> {
            let expr = Parser { text: part.as_bytes(), at: 0 }.parse().map_err(|e| format!("{e}; {FORM}"))?;
            expr.check(&columns)?;
            Ok(Side { text: part.to_string(), expr })
        };
        Ok(Assertion { left: side(left)?, op, right: side(right)?, text })
    }
}

/// One assertion's verdict on a run: a row of `assertions.csv`, and an
/// object of the `assertions` array in `--format json`. Kept beside the run
/// so that a CI log, a dashboard and the page all say which gate held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AssertionRow {
    /// The assertion as given (spaces removed), e.g. `p99_us<2000`.
    pub assertion: String,
    /// `pass`, `fail`, or `not checked` (the run did not complete, so no gate applies).
    pub verdict: String,
    /// The measured value of each side that is not a plain number: `p99_us = 2345.6`.
    pub measured: String,
    /// The value of its first side that is not a plain number (`p99_us` in
    /// `p99_us<2000`); empty when that side has none (no deliveries).
    pub observed: Option<f64>,
}

impl AssertionRow {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// `✓ p99_us<2000 (p99_us = 409.6)`, `✗ ...`, or `– ... not checked`.
    pub fn line(&self) -> String {
        let mark = match self.verdict.as_str() {
            "pass" => "✓",
            "fail" => "✗",
            _ => "–",
        };
        match self.verdict.as_str() {
            "pass" | "fail" => format!("{mark} {} ({})", self.assertion, self.measured),
            other => format!("{mark} {} ({other})", self.assertion),
        }
    }
}

/// The verdict of each assertion on a run; a run that did not complete
/// (interrupted, aborted, a checkpoint) is checked against none of them.
pub fn verdicts(asserts: &[Assertion], row: &SummaryRow) -> Vec<AssertionRow> {
    let checked = row.status == crate::live::Status::Ok;
    asserts
        .iter()
        .map(|a| {
            let (passed, measured, observed) = a.evaluate(row);
            let verdict = match (checked, passed) {
                (false, _) => "not checked",
                (true, true) => "pass",
                (true, false) => "fail",
            };
            AssertionRow { assertion: a.text.clone(), verdict: verdict.into(), measured, observed }
        })
        .collect()
}

/// The assertions a run's `scenario.toml` declares (`assert`, a list or one
/// string), for the pages rebuilt from a run's files. eventbench wrote them
/// after parsing them, so one that no longer parses is left out.
pub fn from_scenario_toml(scenario: &str) -> Vec<Assertion> {
    let Ok(table) = toml::from_str::<toml::Table>(scenario) else { return Vec::new() };
    let texts: Vec<String> = match table.get("assert") {
        Some(toml::Value::String(one)) => vec![one.clone()],
        Some(toml::Value::Array(list)) => list.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    };
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}
/// The end-to-end latency columns: a ceiling on one of them is a latency
/// budget that pacing may take a share of (`scenario::pacing`).
const LATENCY_COLUMNS: [&str; 8] =
    ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "raw_p50_us", "raw_p99_us", "raw_max_us"];

impl Assertion {
    /// The ceiling this gate puts on an end-to-end latency percentile, µs
    /// (`p99_us<2000`: 2000), if it is one.
    pub fn latency_ceiling_us(&self) -> Option<f64> {
        match (&self.left.expr, self.op, &self.right.expr) {
            (Expr::Column(c), Op::Lt | Op::Le, Expr::Number(v)) if LATENCY_COLUMNS.contains(&c.as_str()) => Some(*v),
            _ => None,
        }
    }

    /// Evaluates the assertion on a run's summary.
    pub fn check(&self, row: &SummaryRow) -> Verdict {
        let (passed, measured, _) = self.evaluate(row);
        Verdict { passed, line: format!("{} ({measured})", self.text) }
    }

    /// Whether it holds on `row`, the measured value of each side that is
    /// not a plain number in words, and the first such value.
    fn evaluate(&self, row: &SummaryRow) -> (bool, String, Option<f64>) {
        let columns = numeric_columns(row);
        let (l, r) = (self.left.expr.eval(&columns), self.right.expr.eval(&columns));
        let passed = match self.op {
            Op::Lt => l < r,
            Op::Le => l <= r,
            Op::Gt => l > r,
            Op::Ge => l >= r,
            Op::Eq => l == r,
            Op::Ne => l != r,
        };
        // Show the measured value of each side that is not a plain number.
        let measured: Vec<(&Side, f64)> = [(&self.left, l), (&self.right, r)]
            .into_iter()
            .filter(|(side, _)| !matches!(side.expr, Expr::Number(_)))
            .collect();
        let shown: Vec<String> = measured
            .iter()
            .map(|(side, v)| match v.is_nan() {
                true => format!("{} is empty", side.text),
                false => format!("{} = {v}", side.text),
            })
            .collect();
        let observed = measured.first().map(|(_, v)| *v).filter(|v| !v.is_nan());
        (passed, shown.join(", "), observed)
    }
}

impl Expr {
    fn check(&self, columns: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
        match self {
            Expr::Number(_) => Ok(()),
            Expr::Column(name) if columns.contains_key(name) => Ok(()),
            Expr::Column(name) => {
                let names: Vec<&str> = columns.keys().map(String::as_str).collect();
                Err(format!(
                    "{} is not a numeric summary.csv column (one of: {})",
                    crate::text::quote(name),
                    names.join(", ")
                ))
            }
            Expr::Neg(e) => e.check(columns),
            Expr::Binary(a, _, b) => a.check(columns).and(b.check(columns)),
        }
    }

    fn eval(&self, columns: &serde_json::Map<String, serde_json::Value>) -> f64 {
        match self {
            Expr::Number(n) => *n,
            Expr::Column(name) => columns.get(name).and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
            Expr::Neg(e) => -e.eval(columns),
            Expr::Binary(a, op, b) => {
                let (a, b) = (a.eval(columns), b.eval(columns));
                match op {
                    b'+' => a + b,
                    b'-' => a - b,
                    b'*' => a * b,
                    _ => a / b,
                }
            }
        }
    }
}

/// Recursive descent over `expr := term (('+'|'-') term)*`,
/// `term := factor (('*'|'/') factor)*`, `factor := number | column | '-' factor | '(' expr ')'`.
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn parse(mut self) -> Result<Expr, String> {
        if self.text.is_empty() {
            return Err("a side of the comparison is empty".into());
        }
        let e = self.expr(0)?;
        match self.peek() {
            None => Ok(e),
            Some(c) => Err(format!("unexpected '{}'", c as char)),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, String> {
        self.binary(depth, b"+-", Self::term)
    }

    fn term(&mut self, depth: usize) -> Result<Expr, String> {
        self.binary(depth, b"*/", Self::factor)
    }

    /// `operand (op operand)*`, left-associative, for the operators in `ops`.
    fn binary(
        &mut self,
        depth: usize,
        ops: &[u8],
        operand: fn(&mut Self, usize) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut e = operand(self, depth)?;
        while let Some(op) = self.peek().filter(|c| ops.contains(c)) {
            self.at += 1;
            e = Expr::Binary(Box::new(e), op, Box::new(operand(self, depth)?));
        }
        Ok(e)
    }

    fn factor(&mut self, depth: usize) -> Result<Expr, String> {
        // Bounded, so a pathological expression is an error, not a stack overflow.
        if depth > 32 {
            return Err("expression nested too deep".into());
        }
        let start = self.at;
        match self.peek() {
            Some(b'-') => {
                self.at += 1;
                Ok(Expr::Neg(Box::new(self.factor(depth + 1)?)))
            }
            Some(b'(') => {
                self.at += 1;
                let e = self.expr(depth + 1)?;
                if self.peek() != Some(b')') {
                    return Err("missing ')'".into());
                }
                self.at += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
                    self.at += 1;
                }
                let digits = std::str::from_utf8(&self.text[start..self.at]).unwrap_or_default();
                digits.parse().map(Expr::Number).map_err(|_| format!("{} is not a number", crate::text::quote(digits)))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.at += 1;
                }
                Ok(Expr::Column(String::from_utf8_lossy(&self.text[start..self.at]).into_owned()))
            }
            Some(c) => Err(format!("unexpected '{}'", c as char)),
            None => Err("an expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SummaryRow {
        SummaryRow { p99_us: Some(2500.0), lost: 0, delivery_rate: 990.0, target_rate: 1000.0, ..SummaryRow::default() }
    }

    #[test]
    fn every_assertion_leaves_a_verdict_and_an_unfinished_run_none() {
        let asserts: Vec<Assertion> = ["p99_us<2000", "lost==0"].iter().map(|t| t.parse().unwrap()).collect();
        let rows = verdicts(&asserts, &row());
        assert_eq!(rows[0].verdict, "fail");
        assert_eq!(rows[0].line(), "✗ p99_us<2000 (p99_us = 2500)");
        assert_eq!(rows[1].line(), "✓ lost==0 (lost = 0)");
        assert!(rows[1].passed() && !rows[0].passed());
        let aborted = SummaryRow { status: crate::live::Status::Aborted, ..row() };
        let rows = verdicts(&asserts, &aborted);
        assert!(rows.iter().all(|r| r.verdict == "not checked"), "{rows:?}");
        assert_eq!(rows[1].line(), "– lost==0 (not checked)");
    }

    #[test]
    fn a_run_directory_gives_its_assertions_back() {
        let toml = "name = \"x\"\nassert = [\"lost==0\", \"p99_us<1000\"]\n";
        let got: Vec<String> = from_scenario_toml(toml).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["lost==0", "p99_us<1000"]);
        assert_eq!(from_scenario_toml("assert = \"sent>1\"").len(), 1);
        assert!(from_scenario_toml("name = \"x\"").is_empty());
    }

    #[test]
    fn a_latency_ceiling_is_a_latency_column_bounded_from_above_by_a_number() {
        let ceiling = |s: &str| s.parse::<Assertion>().unwrap().latency_ceiling_us();
        assert_eq!(ceiling("p99_us<2000"), Some(2000.0));
        assert_eq!(ceiling("p999_us <= 5000"), Some(5000.0));
        assert_eq!(ceiling("p99_us>10"), None);
        assert_eq!(ceiling("send_lag_p99_us<1000"), None, "not an end-to-end latency");
        assert_eq!(ceiling("p99_us<2*p50_us"), None, "not a number");
    }

    #[test]
    fn passes_and_fails_with_the_measured_value() {
        let check = |s: &str| s.parse::<Assertion>().unwrap().check(&row());
        assert_eq!(check("p99_us < 2000"), Verdict { passed: false, line: "p99_us<2000 (p99_us = 2500)".into() });
        assert!(check("lost==0").passed);
        assert!(check("delivery_rate>=0.99*target_rate").passed);
        let v = check("delivery_rate>0.995*target_rate");
        assert_eq!(v.line, "delivery_rate>0.995*target_rate (delivery_rate = 990, 0.995*target_rate = 995)");
        assert!(!v.passed);
        assert!(check("(p99_us - 500) / 2 <= 1000").passed);
        assert!(check("-lost > -1").passed);
        assert!(check("2000 > p99_us").line.starts_with("2000>p99_us (p99_us = 2500)"));
    }

    #[test]
    fn bad_expressions_say_what_is_accepted() {
        for (bad, needle) in [
            ("p99_us", "no comparison"),
            ("p99_us=2000", "use =="),
            ("p99<2000", "not a numeric summary.csv column"),
            ("status==1", "not a numeric summary.csv column"),
            ("p99_us<", "empty"),
            ("p99_us<20 00x", "unexpected"),
            ("p99_us<(1", "missing ')'"),
            ("p99_us<1.2.3", "not a number"),
            ("p99_us<2000ms", "unexpected"),
            ("p99_us<#", "unexpected '#'"),
        ] {
            let e = bad.parse::<Assertion>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let deep = format!("lost<{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(deep.parse::<Assertion>().unwrap_err().contains("too deep"));
    }
}
