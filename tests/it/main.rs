//! Every integration test in one binary, one module per area: the suite
//! links this once instead of once per file (each link is ~100 MB of debug
//! binary), and the test threads stay busy across areas instead of idling at
//! the end of each file's slowest test.
//!
//! `scripts/test.sh` runs each test in a process of its own (cargo-nextest,
//! as many at once as CPUs), under a timeout that names a test that hangs and
//! ends the processes it started (`.config/nextest.toml`); `cargo test` runs
//! them as parallel threads of one process. A test must therefore keep its
//! process-wide effects to itself: environment variables go to the child `Command`, never
//! `std::env::set_var`; signals go to the test's own children; no test
//! changes the current directory.
//!
//! proptest keeps the regressions of `foreign.rs` in
//! `tests/proptest-regressions/foreign.txt`: its default persistence walks up
//! from the source file to the directory holding `main.rs` (this one) and
//! uses a `proptest-regressions` directory beside it.

mod common;

mod architecture;
mod backlog;
mod capacity;
mod cli;
mod cluster;
mod docs;
mod drivers;
mod efficiency;
mod export;
mod failures;
mod foreign;
mod hostile;
mod hosts;
mod loopback;
mod loss;
mod overload;
mod pacing;
mod paused;
mod polish;
mod profiles;
mod pubsub;
mod reading;
mod report;
mod security;
mod signals;
mod soak;
mod streams;
mod sweep;
mod telemetry;
mod valkey;
mod workers;
mod workload;
