//! One reconcile pass: load → validate → observe → plan → apply → report.
//!
//! Validation happens before anything touches the host: an invalid desired state returns
//! `ReconcileError::Invalid` with every problem, and the running services stay as they are.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, info_span, warn, Instrument};

use crate::apply::{self, ApplyContext, ApplyReport};
use crate::desired::{interpolate::Env, load_desired, spec::DesiredState};
use crate::diag::Diagnostic;
use crate::engine::{DockerEngine, Engine, EngineError};
use crate::plan::{self, Plan, PlanOptions};
use crate::state::{self, Applied};

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// The `desired-state/` directory (of a source snapshot or a local checkout).
    pub desired_root: PathBuf,
    pub host: String,
    /// dotenv file for interpolation (default `<desired_root>/.env`, else `.env.example`).
    pub env_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Revision being applied (commit id), recorded in state and labels.
    pub revision: Option<String>,
    /// Remove managed containers that are no longer desired.
    pub prune: bool,
    pub prune_volumes: bool,
    /// Allow a desired state with no services to prune everything.
    pub allow_empty: bool,
    pub health_timeout: Duration,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            desired_root: PathBuf::from("desired-state"),
            host: String::new(),
            env_file: None,
            state_dir: state::default_state_dir(),
            revision: None,
            prune: true,
            prune_volumes: false,
            allow_empty: false,
            health_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub host: String,
    pub revision: Option<String>,
    pub tried: usize,
    pub failed: usize,
    pub changed: usize,
    pub done: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("desired state is invalid ({} problems); nothing was changed", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot read the env file {path}: {source}")]
    EnvFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The env file interpolation reads: the given one, else `.env`, else the committed
/// `.env.example` (safe local defaults), so a fresh checkout works without set-up.
pub fn env_for(opts_env: Option<&PathBuf>, root: &std::path::Path) -> Result<Env, ReconcileError> {
    let path = match opts_env {
        Some(p) => p.clone(),
        None if root.join(".env").exists() => root.join(".env"),
        None => root.join(".env.example"),
    };
    Env::load(Some(&path)).map_err(|source| ReconcileError::EnvFile { path, source })
}

/// Load and validate; nothing touches the host.
pub fn desired(opts: &ReconcileOptions) -> Result<DesiredState, ReconcileError> {
    let env = env_for(opts.env_file.as_ref(), &opts.desired_root)?;
    load_desired(&opts.desired_root, &opts.host, &env).map_err(ReconcileError::Invalid)
}

pub fn plan_options(opts: &ReconcileOptions) -> PlanOptions {
    PlanOptions {
        prune: opts.prune,
        prune_volumes: opts.prune_volumes,
        allow_empty: opts.allow_empty,
    }
}

/// Validate, observe and plan: what `diff` shows.
pub async fn diff<E: Engine>(
    engine: &E,
    opts: &ReconcileOptions,
) -> Result<(DesiredState, Plan), ReconcileError> {
    let d = desired(opts)?;
    let observed = engine.observe().await?;
    let p = plan::plan(&d, &observed, &plan_options(opts));
    Ok((d, p))
}

/// One full pass with the Docker engine.
pub async fn reconcile(opts: &ReconcileOptions) -> Result<Report, ReconcileError> {
    let engine = DockerEngine::connect().await?;
    reconcile_with(&engine, opts).await
}

pub async fn reconcile_with<E: Engine>(
    engine: &E,
    opts: &ReconcileOptions,
) -> Result<Report, ReconcileError> {
    let span = info_span!("reconcile", host = %opts.host, revision = opts.revision.as_deref().unwrap_or("local"));
    async move {
        let (desired, plan) = diff(engine, opts).await?;
        let ctx = ApplyContext {
            revision: opts.revision.clone(),
            state_dir: opts.state_dir.clone(),
            health_timeout: opts.health_timeout,
        };
        let ApplyReport {
            tried,
            failed,
            done,
            errors,
        } = apply::apply(engine, &desired, &plan, &ctx).await;
        for e in &errors {
            warn!(error = %e, "step failed");
        }
        let applied = Applied {
            revision: opts.revision.clone(),
            at: Some(chrono::Utc::now()),
            tried,
            failed,
            inventory: desired
                .services
                .iter()
                .map(|s| (s.key(), s.container_name.clone()))
                .collect(),
        };
        state::write_json(&state::applied_path(&opts.state_dir, &opts.host), &applied)?;
        info!(tried, failed, changed = done.len(), "reconciled");
        Ok(Report {
            host: opts.host.clone(),
            revision: opts.revision.clone(),
            tried,
            failed,
            changed: done.len(),
            done,
            errors,
        })
    }
    .instrument(span)
    .await
}
