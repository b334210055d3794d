//! The daemon with the real side effects: the Docker reconcile core, forwarders, drift events,
//! SIGTERM/SIGINT. `main` calls [`run`] with the layered config; tests drive `Daemon` directly.

use std::sync::Arc;

use super::{ApplyRequest, Daemon, DaemonError, Reconciler};
use crate::config::AgentConfig;
use crate::outcome::Outcome;
use crate::reconcile::{ReconcileError, SharedForwarder};
use crate::rollout::{RolloutReport, RolloutSettings, WatchPlan};
use crate::server::metrics::Metrics;
use crate::server::status::ServiceState;

/// The Docker reconcile core (`crate::reconcile`). `state_dir` is where the applied state
/// says how many replicas each service wants (`None`: unknown, status lists containers only).
#[derive(Debug, Clone, Default)]
pub struct CoreReconciler {
    state_dir: Option<std::path::PathBuf>,
}

impl CoreReconciler {
    pub fn new(state_dir: std::path::PathBuf) -> Self {
        Self {
            state_dir: Some(state_dir),
        }
    }
}

impl Reconciler for CoreReconciler {
    async fn reconcile(&self, req: &ApplyRequest) -> Result<Outcome, ReconcileError> {
        crate::reconcile::reconcile(&req.options).await
    }

    async fn watch(&self, plan: WatchPlan, settings: RolloutSettings) -> RolloutReport {
        match crate::engine::DockerEngine::connect().await {
            Ok(engine) => crate::rollout::watch_on(&engine, &plan, settings.stable).await,
            // Nothing can be judged healthy without the engine; a rollback will say whether
            // the engine is back.
            Err(e) => RolloutReport {
                watched: plan.services(),
                failed: plan
                    .services()
                    .into_iter()
                    .map(|s| (s, format!("cannot watch: {e}")))
                    .collect(),
                affected: plan
                    .dependents
                    .values()
                    .flatten()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            },
        }
    }

    /// Every container of the host's services, one entry per replica, with the number of
    /// replicas the applied revision wants.
    async fn services(&self, host: &str) -> Vec<ServiceState> {
        use crate::labels;
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let Ok(engine) = crate::engine::DockerEngine::connect().await else {
            return Vec::new();
        };
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={host}", labels::HOST),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(list) = engine.client().list_containers(Some(opts)).await else {
            return Vec::new();
        };
        let applied: Option<crate::state::Applied> = self.state_dir.as_ref().and_then(|d| {
            let text = std::fs::read(crate::state::applied_path(d, host)).ok()?;
            serde_json::from_slice(&text).ok()
        });
        let mut out: Vec<ServiceState> = list
            .into_iter()
            .map(|c| {
                let l: std::collections::BTreeMap<String, String> =
                    c.labels.unwrap_or_default().into_iter().collect();
                let get = |k: &str| l.get(k).cloned().unwrap_or_default();
                let name = format!("{}/{}", get(labels::STACK), get(labels::SERVICE));
                ServiceState {
                    wanted: applied.as_ref().map(|a| a.wanted(&name)),
                    name,
                    replica: labels::container_number(&l),
                    state: c
                        .state
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    revision: l.get(labels::REVISION).cloned(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.name, a.replica).cmp(&(&b.name, b.replica)));
        out
    }
}

/// `macula-gitops run` with the real reconciler, until SIGTERM/SIGINT: `cfg` is the layered
/// config (`AgentConfig::resolve`), its source a git repository or a local directory. Drift
/// events of managed containers (Docker events) trigger a pass like any other cause.
pub async fn run(cfg: AgentConfig) -> Result<(), DaemonError> {
    // Forwarders live as long as the daemon; every pass hands them the current forwards.
    let forwarder = match SharedForwarder::start().await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "forwarders unavailable; routing forwards will not be served");
            None
        }
    };
    let metrics = match &forwarder {
        Some(f) => Metrics::new_with(|r| f.0.register_metrics(r)),
        None => Metrics::new(),
    };
    let host = cfg.host();
    let reconciler = CoreReconciler::new(cfg.state_dir());
    let mut daemon = Daemon::new(cfg, reconciler, Arc::new(metrics))?;
    if let Some(f) = forwarder {
        daemon = daemon.with_forwarder(f);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(crate::drift::watch(host, tx));
    daemon.with_drift(rx).run(shutdown_signal()).await
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
