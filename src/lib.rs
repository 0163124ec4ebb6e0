//! eventbench: a load-testing and benchmarking harness for event-driven
//! pipelines on Redis.
//!
//! [`run`] takes a validated [`Scenario`], finds or starts Redis, drives the
//! swarm and returns a [`RunReport`]; it never prints. The binary and the
//! integration tests both go through it. ARCHITECTURE.md maps the modules.

pub mod assertion;
pub mod capacity;
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod connect;
pub mod drivers;
pub mod export;
pub mod live;
pub mod meters;
pub mod pacer;
pub mod pipeline;
pub mod probe;
pub mod progress;
pub mod report;
pub mod results;
pub mod rows;
pub mod scenario;
pub mod stats;
pub mod swarm;
pub mod sys;
pub mod target;
pub mod telemetry;
pub mod text;
pub mod topology;
pub mod wire;

pub use live::{Live, Status};
pub use pipeline::{run, run_on, run_with};
pub use results::RunReport;
pub use scenario::Scenario;
