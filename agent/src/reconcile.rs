//! One reconcile pass: load → validate → observe → plan → apply → report.
//! (Interface committed first so the daemon can be built against it; body lands with the core.)

use std::path::PathBuf;

use serde::Serialize;

use crate::diag::Diagnostic;

#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// The `desired-state/` directory (of a source snapshot or a local checkout).
    pub desired_root: PathBuf,
    pub host: String,
    /// dotenv file for interpolation (default `<desired_root>/.env`).
    pub env_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Revision being applied (commit id), recorded in state and labels.
    pub revision: Option<String>,
    /// Remove managed containers that are no longer desired.
    pub prune: bool,
    pub prune_volumes: bool,
    /// Allow a desired state with no services to prune everything.
    pub allow_empty: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub revision: Option<String>,
    pub tried: usize,
    pub failed: usize,
    pub changed: usize,
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("desired state is invalid ({} problems); nothing was changed", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("docker: {0}")]
    Engine(String),
}
