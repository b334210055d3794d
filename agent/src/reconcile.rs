//! One reconcile pass: load → validate → observe → plan → apply → report.
//!
//! Validation happens before anything touches the host: an invalid desired state returns
//! `ReconcileError::Invalid` with every problem, and the running services stay as they are.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, info_span, warn, Instrument};

use crate::apply::{self, ApplyContext, ApplyReport};
use crate::cluster::{self, ResolvedClusters};
use crate::config::AgentConfig;
use crate::desired::{interpolate::Env, load_checked, spec::DesiredState};
use crate::diag::Diagnostic;
use crate::engine::{DockerEngine, Engine, EngineError};
use crate::outcome::{
    Action, Change, DiagnosticView, ItemError, Outcome, PassResult, Subject, SubjectKind,
};
use crate::plan::{self, Observed, Plan, PlanOptions};
use crate::policy::Policy;
use crate::rollout;
use crate::routing::{self, validate::Resolved, Forwarder};
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
    /// Delete kind clusters this host no longer wants (they hold state: never implied).
    pub prune_clusters: bool,
    /// The agent's git source URL: Flux's default `git_url` when clusters.yaml sets none.
    pub source_url: Option<String>,
    /// The ref the source follows (branch, tag; `None`: the remote's HEAD), for the revision
    /// an oci cluster artifact records.
    pub source_ref: Option<String>,
    /// The daemon's running forwarders; `None` (one-shot `apply`): DNS only, no listeners.
    pub forwarder: Option<SharedForwarder>,
    /// Privileges the host grants (the agent config's `policy:`); `validate`, `diff`, `apply`
    /// and the daemon all check against it.
    pub policy: Policy,
    /// Where read-write relative binds keep their data (`crate::data`).
    pub data_root: PathBuf,
    /// The daemon's rollout of this pass: services pinned to the last good revision, and
    /// whether to say what to watch (`Outcome::watch`, `crate::rollout`). Default: neither.
    pub rollout: rollout::PassRollout,
}

impl ReconcileOptions {
    /// The core's options from the layered config (`AgentConfig::resolve`): the local
    /// directory as the desired state (a daemon points `desired_root` at each revision).
    pub fn from_config(cfg: &AgentConfig) -> Result<Self, crate::config::ConfigError> {
        let r = &cfg.reconcile;
        Ok(Self {
            desired_root: cfg.desired_state(),
            host: cfg.host(),
            env_file: r.env_file.clone(),
            state_dir: cfg.state_dir(),
            revision: None,
            prune: r.prune.unwrap_or(true),
            prune_volumes: r.prune_volumes,
            allow_empty: r.allow_empty,
            health_timeout: r.health_timeout()?,
            prune_clusters: r.prune_clusters,
            source_url: cfg.source.as_ref().map(|s| s.url.clone()),
            source_ref: cfg.source.as_ref().and_then(|s| s.reference.clone()),
            forwarder: None,
            policy: cfg.policy(),
            data_root: cfg.data_root(),
            rollout: Default::default(),
        })
    }
}

/// The forwarders outlive reconcile passes; passes hand them the new forwards.
#[derive(Clone)]
pub struct SharedForwarder(pub std::sync::Arc<Forwarder>);

impl std::fmt::Debug for SharedForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedForwarder")
    }
}

impl SharedForwarder {
    /// Forwarders resolving container targets through the engine (re-resolved on its events).
    pub async fn start() -> Result<Self, routing::RoutingError> {
        let resolver = std::sync::Arc::new(routing::DockerResolver::connect().await?);
        resolver.spawn_invalidation();
        Ok(Self(std::sync::Arc::new(Forwarder::new(
            resolver,
            Default::default(),
        ))))
    }
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
            prune_clusters: false,
            source_url: None,
            source_ref: None,
            forwarder: None,
            policy: Policy::new(Default::default(), crate::config::default_config_path()),
            data_root: crate::data::default_data_root(),
            rollout: Default::default(),
        }
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

impl ReconcileError {
    /// How a pass that ended in this error is reported: every problem of an invalid desired
    /// state, or the error's message; either way nothing was changed.
    pub fn into_result(self) -> PassResult {
        match self {
            ReconcileError::Invalid(d) => PassResult::Invalid {
                diagnostics: d.iter().map(DiagnosticView::from).collect(),
            },
            other => PassResult::Error {
                message: crate::redact::redact(&other.to_string()).into_owned(),
            },
        }
    }
}

/// A pass's outcome whichever way it ended: what `apply` prints and the daemon publishes.
pub fn outcome_of(
    host: &str,
    revision: Option<String>,
    res: Result<Outcome, ReconcileError>,
) -> Outcome {
    res.unwrap_or_else(|e| Outcome::stopped(host, revision, e.into_result()))
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

/// Everything the host should run, validated: stacks, and the clusters file when selected.
#[derive(Debug, Clone)]
pub struct HostDesired {
    pub state: DesiredState,
    pub env: Env,
    /// `clusters.yaml` resolved for the host, when it has one or selects clusters.
    pub clusters: Option<ResolvedClusters>,
    /// `routing.yaml`, resolved against the host's services, when the host selects routing.
    pub routing: Option<Resolved>,
}

/// Load and validate every file the host uses; nothing touches the host.
pub fn desired(opts: &ReconcileOptions) -> Result<HostDesired, ReconcileError> {
    let env = env_for(opts.env_file.as_ref(), &opts.desired_root)?;
    let mut state = load_checked(&opts.desired_root, &opts.host, &env, Some(&opts.policy))
        .map_err(ReconcileError::Invalid)?;
    if let Some(p) = &opts.rollout.pins {
        // The last good revision was valid when it ran; read it as it is on disk now.
        let genv = env_for(opts.env_file.as_ref(), &p.desired_root)?;
        let good = load_checked(&p.desired_root, &opts.host, &genv, Some(&opts.policy))
            .map_err(ReconcileError::Invalid)?;
        rollout::pin(&mut state, &good, &p.services);
    }
    let clusters = cluster::run::load_for_host(&state, &env, opts.source_url.as_deref())
        .map_err(ReconcileError::Invalid)?;
    let routing = if state.selection.routing {
        let path = opts.desired_root.join("routing.yaml");
        Some(routing::check(&path, &env, &state.catalog()).map_err(ReconcileError::Invalid)?)
    } else {
        None
    };
    Ok(HostDesired {
        state,
        env,
        clusters,
        routing,
    })
}

impl HostDesired {
    /// Every warning of every file the host uses, in print order.
    pub fn warnings(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self
            .state
            .warnings
            .iter()
            .chain(self.clusters.iter().flat_map(|c| &c.warnings))
            .chain(self.routing.iter().flat_map(|r| &r.warnings))
            .collect();
        all.sort();
        all
    }
}

fn cluster_options(opts: &ReconcileOptions) -> cluster::apply::ApplyOptions {
    cluster::apply::ApplyOptions {
        state_dir: opts.state_dir.clone(),
        provenance: cluster::oci::Provenance {
            source: opts
                .source_url
                .as_deref()
                .map(|u| crate::redact::without_credentials(u).into_owned()),
            reference: opts.source_ref.clone(),
            commit: opts.revision.clone(),
        },
        ..Default::default()
    }
}

/// The cluster half of `diff`: the steps apply would run, warnings, and why clusters could not
/// be inspected (e.g. `kind` missing) — never fatal to the host diff.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClustersDiff {
    pub steps: Vec<cluster::ClusterStep>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

impl ClustersDiff {
    /// Apply would change something (report-only steps change nothing).
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|s| !s.is_report())
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.warnings.is_empty() && self.error.is_none()
    }
}

impl std::fmt::Display for ClustersDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        for w in &self.warnings {
            writeln!(f, "! {w}")?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "! clusters: {e}")?;
        }
        Ok(())
    }
}

pub async fn diff_clusters(hd: &HostDesired, opts: &ReconcileOptions) -> ClustersDiff {
    let Some(clusters) = &hd.clusters else {
        return ClustersDiff::default();
    };
    let copts = cluster_options(opts);
    match cluster::run::diff_host(&hd.state, clusters, opts.prune_clusters, &copts).await {
        Ok((steps, warnings)) => ClustersDiff {
            steps,
            warnings,
            error: None,
        },
        Err(e) => ClustersDiff {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

pub fn plan_options(opts: &ReconcileOptions) -> PlanOptions {
    PlanOptions {
        prune: opts.prune,
        prune_volumes: opts.prune_volumes,
        allow_empty: opts.allow_empty,
        watched: opts.rollout.watched.clone(),
    }
}

/// Validate, observe and plan: what `diff` shows (the observation is kept for `apply`).
pub async fn diff<E: Engine>(
    engine: &E,
    opts: &ReconcileOptions,
) -> Result<(HostDesired, Observed, Plan), ReconcileError> {
    let started = std::time::Instant::now();
    let d = desired(opts)?;
    let loaded = started.elapsed();
    let mut observed = engine.observe().await?;
    let observed_at = started.elapsed();
    observed.data = crate::data::desired_dirs(&opts.data_root, &d.state);
    let p = plan::plan(&d.state, &observed, &plan_options(opts));
    tracing::debug!(
        load_ms = ms(loaded),
        observe_ms = ms(observed_at - loaded),
        plan_ms = ms(started.elapsed() - observed_at),
        steps = p.steps.len(),
        "planned"
    );
    Ok((d, observed, p))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One full pass with the Docker engine.
pub async fn reconcile(opts: &ReconcileOptions) -> Result<Outcome, ReconcileError> {
    let engine = DockerEngine::connect().await?;
    reconcile_with(&engine, opts).await
}

pub async fn reconcile_with<E: Engine>(
    engine: &E,
    opts: &ReconcileOptions,
) -> Result<Outcome, ReconcileError> {
    let span = info_span!("reconcile", host = %opts.host, revision = opts.revision.as_deref().unwrap_or("local"));
    async move {
        let pass = std::time::Instant::now();
        let (hd, observed, plan) = diff(engine, opts).await?;
        for w in hd.warnings() {
            tracing::warn!(warning = %w, "desired state");
        }
        let desired = &hd.state;
        state::ensure_private_dir(&opts.state_dir)?;
        let ctx = ApplyContext {
            revision: opts.revision.clone(),
            pins: opts.rollout.pins.clone(),
            state_dir: opts.state_dir.clone(),
            data_root: opts.data_root.clone(),
            prune_volumes: opts.prune_volumes,
            health_timeout: opts.health_timeout,
        };
        let ApplyReport {
            tried,
            failed,
            changes,
            errors,
        } = apply::apply(engine, desired, &observed, &plan, &ctx).await;
        tracing::debug!(ms = ms(pass.elapsed()), "applied");
        let mut outcome = Outcome {
            host: opts.host.clone(),
            revision: opts.revision.clone(),
            tried,
            failed,
            changes,
            errors,
            ..Default::default()
        };
        // Clusters after the host stacks: the registry container they wire in must exist.
        if let Some(clusters) = &hd.clusters {
            let copts = cluster_options(opts);
            match cluster::run::apply_host(desired, clusters, opts.prune_clusters, &copts).await {
                Ok(r) => {
                    for n in &r.notices {
                        info!(notice = %n, "clusters");
                    }
                    outcome.absorb(
                        r.tried,
                        r.failed,
                        r.done.iter().map(Change::of_cluster_step).collect(),
                        r.errors.iter().map(cluster_error).collect(),
                    );
                }
                // A host without kind still gets its services and routing: each cluster is
                // reported skipped, with why, instead of failing the pass.
                Err(e @ cluster::ClusterError::KindMissing) => {
                    outcome
                        .skipped
                        .extend(clusters_skipped(&desired.selection.clusters, &e));
                }
                Err(e) => outcome.absorb(1, 1, Vec::new(), vec![cluster_error(&e)]),
            }
            outcome.clusters = cluster::run::status_host(desired).await.unwrap_or_default();
        }
        if let Some(r) = &hd.routing {
            apply_routing(r, opts, &mut outcome).await;
        }
        // The daemon watches what this pass started, in a task of its own (`crate::rollout`).
        outcome.watch = (opts.rollout.watch.as_ref()).map(|s| {
            let mut w = rollout::WatchPlan::of(desired, &plan, s);
            w.note_failures(&outcome.errors);
            w
        });
        for e in &outcome.errors {
            warn!(error = %e, "step failed");
        }
        for e in &outcome.skipped {
            warn!(reason = %e, "skipped");
        }
        let applied = Applied {
            revision: opts.revision.clone(),
            at: Some(chrono::Utc::now()),
            tried: outcome.tried,
            failed: outcome.failed,
            inventory: desired
                .services
                .iter()
                .map(|s| (s.key(), s.container_name.clone()))
                .collect(),
            replicas: desired
                .services
                .iter()
                .filter(|s| s.replicas != 1)
                .map(|s| (s.key(), s.replicas))
                .collect(),
        };
        state::write_json(&state::applied_path(&opts.state_dir, &opts.host), &applied)?;
        outcome.data = crate::data::desired_dirs(&opts.data_root, desired);
        let outcome = outcome.settle();
        info!(
            tried = outcome.tried,
            failed = outcome.failed,
            changed = outcome.changed(),
            ms = ms(pass.elapsed()),
            "reconciled"
        );
        Ok(outcome)
    }
    .instrument(span)
    .await
}

/// A cluster's failure as an outcome item: the cluster it names is its subject, so
/// `apply --output json` says which cluster failed.
fn cluster_error(e: &cluster::ClusterError) -> ItemError {
    match e.cluster() {
        Some(name) => ItemError::new(
            Some(Subject::new(SubjectKind::Cluster, name)),
            e.to_string(),
        ),
        None => ItemError::new(None, format!("clusters: {e}")),
    }
}

/// Each selected cluster, not attempted for `why` (what this host lacks).
fn clusters_skipped(names: &[String], why: &cluster::ClusterError) -> Vec<ItemError> {
    if names.is_empty() {
        // Only a prune of clusters was asked for.
        return vec![ItemError::new(None, format!("clusters: {why}"))];
    }
    names
        .iter()
        .map(|name| {
            ItemError::new(
                Some(Subject::new(SubjectKind::Cluster, name)),
                format!("cluster {name}: {why}"),
            )
        })
        .collect()
}

/// A forward that failed to start, with the forward as its subject.
fn forward_error(e: &routing::RoutingError) -> ItemError {
    let subject = e
        .forward()
        .map(|name| Subject::new(SubjectKind::Forward, name));
    ItemError::new(subject, e.to_string())
}

/// Forwards (when a daemon holds the listeners) and DNS names, folded into `outcome`.
async fn apply_routing(r: &Resolved, opts: &ReconcileOptions, outcome: &mut Outcome) {
    for (address, name) in &r.loopback {
        if let Err(e) = routing::bind::ensure_loopback_alias((*address).into()).await {
            let subject = Subject::new(SubjectKind::Loopback, address.to_string());
            let error = ItemError::new(Some(subject), format!("loopback {address} ({name}): {e}"));
            outcome.absorb(1, 1, Vec::new(), vec![error]);
        }
    }
    match &opts.forwarder {
        Some(fwd) => {
            let rep = fwd.0.apply(&r.forwards).await;
            let change = |name: &String, action: Action, sign: char| Change {
                subject: Subject::new(SubjectKind::Forward, name),
                action,
                line: format!("{sign} forward {name}"),
            };
            let changes = (rep.started.iter().map(|f| change(f, Action::Create, '+')))
                .chain(
                    rep.retargeted
                        .iter()
                        .map(|f| change(f, Action::Update, '~')),
                )
                .chain(rep.stopped.iter().map(|f| change(f, Action::Remove, '-')))
                .collect();
            let errors = rep.errors.iter().map(forward_error).collect();
            outcome.absorb(rep.tried, rep.failed, changes, errors);
        }
        None if !r.forwards.is_empty() => {
            info!(
                forwards = r.forwards.len(),
                "forwards are served by `macula-gitops run`, not by a one-shot apply"
            );
        }
        None => {}
    }
    if let Some(spec) = &r.dns {
        let backends = routing::dns::backends(spec);
        let rep = routing::dns::reconcile(spec, &backends).await;
        let changes = rep
            .changed
            .iter()
            .map(|backend| Change {
                subject: Subject::new(SubjectKind::Dns, &spec.zone),
                action: Action::Update,
                line: format!(
                    "~ dns {} via {backend} ({} names)",
                    spec.zone,
                    spec.names.len()
                ),
            })
            .collect();
        let zone = Subject::new(SubjectKind::Dns, &spec.zone);
        let errors = rep
            .errors
            .into_iter()
            .map(|e| ItemError::new(Some(zone.clone()), e))
            .collect();
        outcome.absorb(rep.tried, rep.failed, changes, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::validate::{ForwardSpec, TargetSpec};

    /// What `apply --output json` prints for the pass's first error.
    fn first_error_json(outcome: &Outcome) -> serde_json::Value {
        serde_json::to_value(outcome).expect("json")["errors"][0].clone()
    }

    #[tokio::test]
    async fn a_forward_that_cannot_listen_is_named_in_the_outcome() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listen = taken.local_addr().expect("addr");
        let fwd = Forwarder::new(
            std::sync::Arc::new(routing::resolve::StaticResolver),
            Default::default(),
        );
        let opts = ReconcileOptions {
            forwarder: Some(SharedForwarder(std::sync::Arc::new(fwd))),
            ..Default::default()
        };
        let resolved = Resolved {
            loopback: Vec::new(),
            forwards: vec![ForwardSpec {
                name: "web".into(),
                listen,
                protocol: crate::desired::catalog::Protocol::Tcp,
                target: TargetSpec::Address {
                    host: "127.0.0.1".into(),
                    port: 9,
                },
            }],
            dns: None,
            warnings: Vec::new(),
        };
        let mut outcome = Outcome::default();
        apply_routing(&resolved, &opts, &mut outcome).await;
        assert_eq!(outcome.failed, 1);
        let e = first_error_json(&outcome);
        assert_eq!(
            e["subject"],
            serde_json::json!({"kind": "forward", "name": "web"})
        );
        let message = e["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("forward web: cannot listen on {listen}")),
            "{message}"
        );
    }

    #[test]
    fn a_host_without_kind_skips_each_cluster_and_the_pass_still_applies() {
        let mut outcome = Outcome {
            tried: 3,
            ..Default::default()
        };
        let names = ["macula-dev".to_string(), "edge".to_string()];
        let why = cluster::ClusterError::KindMissing;
        outcome.skipped.extend(clusters_skipped(&names, &why));
        let outcome = outcome.settle();
        assert!(outcome.ok(), "{outcome:?}");
        let text = outcome.text();
        assert_eq!(text.out, "0 failed, 3 tried (0 changed, 2 skipped)\n");
        assert_eq!(
            text.err,
            "skipped: cluster macula-dev: `kind` was not found on PATH; install kind (https://kind.sigs.k8s.io) to manage clusters\n\
             skipped: cluster edge: `kind` was not found on PATH; install kind (https://kind.sigs.k8s.io) to manage clusters\n"
        );
        let json = serde_json::to_value(&outcome).expect("json");
        assert_eq!(
            json["skipped"][0]["subject"],
            serde_json::json!({"kind": "cluster", "name": "macula-dev"})
        );
        assert!(outcome
            .status_lines()
            .contains("skipped:   cluster edge: `kind`"));
        // A prune with no cluster selected still says why nothing was done.
        let prune_only = clusters_skipped(&[], &why);
        assert!(prune_only[0].subject.is_none());
        assert!(prune_only[0].message.starts_with("clusters: `kind`"));
    }

    #[test]
    fn a_failed_cluster_is_named_in_the_outcome() {
        let port = cluster::ClusterError::PortTaken {
            cluster: "lab".into(),
            port: "127.0.0.1:6443/TCP".into(),
        };
        let step = cluster::ClusterError::Step {
            cluster: "lab".into(),
            step: "+ cluster lab: create".into(),
            source: Box::new(port),
        };
        let unreachable = cluster::ClusterError::KindMissing;
        let mut outcome = Outcome::default();
        outcome.absorb(
            2,
            2,
            Vec::new(),
            vec![cluster_error(&step), cluster_error(&unreachable)],
        );
        let json = serde_json::to_value(&outcome).expect("json");
        assert_eq!(
            json["errors"][0]["subject"],
            serde_json::json!({"kind": "cluster", "name": "lab"})
        );
        assert_eq!(
            json["errors"][0]["message"],
            "+ cluster lab: create: cluster lab: host port 127.0.0.1:6443/TCP is already in use on this host"
        );
        // Not about one cluster: no subject, and the message says it is about the clusters.
        assert!(json["errors"][1].get("subject").is_none(), "{json}");
        assert!(json["errors"][1]["message"]
            .as_str()
            .expect("message")
            .starts_with("clusters: `kind`"));
    }
}
