//! The desired state: what the repo says this host should run.
//!
//! `load` reads `hosts.yaml` and the selected stacks, interpolates, and normalises into
//! `spec` types; `validate` checks across files. Every problem becomes a `Diagnostic`.

pub mod catalog;
pub mod compose;
pub mod hosts;
pub mod interpolate;
pub mod lines;
