//! Several processes, one run: `eventbench run --workers N` and `eventbench worker`.

pub mod merge;
