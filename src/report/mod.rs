//! What a run leaves behind: CSV files, the effective scenario, an HDR
//! interval log, SVG plots and an HTML page, a terminal table or JSON.
//! Reporters only read a finished [`RunReport`] or, for plots and pages, the
//! run directory's files ([`rundir`]), so `eventbench report` can rebuild them.

pub mod files;
pub mod fmt;
pub mod hlog;
pub mod html;
pub mod plots;
pub mod render;
pub mod rundir;
pub mod stages;
pub mod sweep;
pub mod table;
