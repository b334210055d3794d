//! `macula-gitops run`: the GitOps loop. Triggers wake it; each run fetches, snapshots the
//! commit, and (unless suspended, outside the apply window, or already done) hands the
//! snapshot's `desired-state/` to the reconciler. One run at a time; see `trigger`.
//!
//! A revision that fails validation or is unsafe is never applied: the last good revision stays
//! applied and running, and status carries the diagnostics until a later commit fixes them.

mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::config::{AgentConfig, ConfigError};
use crate::outcome::{DiagnosticView, Hold, Outcome, PassResult};
use crate::reconcile::{ReconcileError, ReconcileOptions};
use crate::server::metrics::Metrics;
use crate::server::status::{ServiceState, Status};
use crate::server::{AppState, Control};
use crate::source::{Source, SourceError, SourceSpec, SyncOutcome};
use crate::trigger::{schedule, watch, Cause, Pending, Trigger};

pub use service::{install_service, service_unit, ServiceOptions};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no source configured: set `source.url` in {config} or pass --url")]
    NoSource { config: PathBuf },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(transparent)]
    Trigger(#[from] crate::trigger::TriggerError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Flags of `macula-gitops run`; each overrides the config file.
#[derive(Debug, Clone, Default)]
pub struct DaemonArgs {
    pub config: Option<PathBuf>,
    pub url: Option<String>,
    pub reference: Option<String>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub host: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    pub apply_window: Option<String>,
    /// Reconcile flags from the CLI (prune, health timeout, ...); `None` = the config's
    /// `reconcile:` section over the core's defaults.
    pub template: Option<ReconcileOptions>,
}

impl DaemonArgs {
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(crate::config::default_config_path)
    }

    /// The config file with the flags laid over it.
    pub fn resolve(&self) -> Result<AgentConfig, DaemonError> {
        let path = self.config_path();
        let mut cfg = AgentConfig::load(&path, self.config.is_some())?;
        if let Some(url) = &self.url {
            cfg.source.get_or_insert_with(Default::default).url = url.clone();
        }
        if let Some(src) = cfg.source.as_mut() {
            if self.reference.is_some() {
                src.reference = self.reference.clone();
            }
            if self.path.is_some() {
                src.path = self.path.clone();
            }
            if self.interval.is_some() {
                src.interval = self.interval.clone();
            }
        }
        if self.listen.is_some() {
            cfg.listen = self.listen;
        }
        if self.state_dir.is_some() {
            cfg.state_dir = self.state_dir.clone();
        }
        if self.host.is_some() {
            cfg.host = self.host.clone();
        }
        if self.webhook_secret_file.is_some() {
            cfg.webhook.secret_file = self.webhook_secret_file.clone();
        }
        if self.apply_window.is_some() {
            cfg.schedule.apply_window = self.apply_window.clone();
        }
        cfg.check()?;
        if cfg.source.is_none() {
            return Err(DaemonError::NoSource { config: path });
        }
        Ok(cfg)
    }
}

/// What one apply needs: the options for the core and the snapshot they point into.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub options: ReconcileOptions,
    pub snapshot: SyncOutcome,
}

/// The side effect the daemon drives. The real one is the Docker reconcile core; tests plug
/// in others. Contract: `Err(Invalid)` means nothing on the host was changed.
pub trait Reconciler: Send + Sync + 'static {
    fn reconcile(
        &self,
        req: &ApplyRequest,
    ) -> impl Future<Output = Result<Outcome, ReconcileError>> + Send;

    /// The managed services of `host` and their container state, for status and metrics.
    fn services(&self, _host: &str) -> impl Future<Output = Vec<ServiceState>> + Send {
        std::future::ready(Vec::new())
    }
}

/// The Docker reconcile core (`crate::reconcile`).
pub struct CoreReconciler;

impl Reconciler for CoreReconciler {
    async fn reconcile(&self, req: &ApplyRequest) -> Result<Outcome, ReconcileError> {
        crate::reconcile::reconcile(&req.options).await
    }

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
        let mut out: Vec<ServiceState> = list
            .into_iter()
            .map(|c| {
                let l = c.labels.unwrap_or_default();
                let get = |k: &str| l.get(k).cloned().unwrap_or_default();
                ServiceState {
                    name: format!("{}/{}", get(labels::STACK), get(labels::SERVICE)),
                    state: c
                        .state
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// `macula-gitops run` with the real reconciler, until SIGTERM/SIGINT. Drift events of managed
/// containers (Docker events) trigger a reconcile like any other cause.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let forwarder = args.template.as_ref().and_then(|t| t.forwarder.clone());
    let metrics = match &forwarder {
        Some(f) => Metrics::new_with(|r| f.0.register_metrics(r)),
        None => Metrics::new(),
    };
    let mut daemon = Daemon::new(cfg, CoreReconciler, Arc::new(metrics))?;
    daemon.app.forwarder = forwarder;
    if let Some(t) = args.template.clone() {
        daemon = daemon.with_template(t);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(crate::drift::watch(daemon.cfg.host(), tx));
    let trigger = daemon.trigger();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            tracing::info!(container = %ev.container, service = %ev.service, action = %ev.action, "drift");
            trigger.fire(Cause::Drift);
        }
    });
    daemon.run(shutdown_signal()).await?;
    Ok(())
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

pub struct Daemon<R> {
    cfg: AgentConfig,
    source: Arc<Source>,
    reconciler: Arc<R>,
    state_dir: PathBuf,
    app: AppState,
    window: Option<cron::Schedule>,
    /// A commit that failed validation: not retried until something other than a poll asks.
    invalid_commit: Option<String>,
    /// Whether the last reconcile of the applied commit succeeded fully.
    applied_ok: bool,
    /// The snapshot of the applied commit: drift is repaired from it without a fetch.
    applied_snapshot: Option<SyncOutcome>,
    /// Options every run starts from; per-run fields (root, revision, ...) are filled in.
    template: ReconcileOptions,
    /// Every pass's outcome goes to subscribers (`subscribe`).
    outcomes: tokio::sync::broadcast::Sender<Arc<Outcome>>,
}

/// Outcomes a slow subscriber may fall behind by before it misses some (it is told how many).
const OUTCOME_BACKLOG: usize = 64;

const SETTLE: Duration = Duration::from_millis(150);

impl<R: Reconciler> Daemon<R> {
    pub fn new(
        cfg: AgentConfig,
        reconciler: R,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DaemonError> {
        let src_cfg = cfg.source.clone().ok_or_else(|| DaemonError::NoSource {
            config: crate::config::default_config_path(),
        })?;
        let state_dir = cfg.state_dir();
        std::fs::create_dir_all(&state_dir).map_err(|source| DaemonError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let spec = SourceSpec::from_config(&src_cfg)?;
        let secret = cfg.webhook.secret()?.map(Arc::new);
        let token = crate::server::auth::write_token(&state_dir)?;
        let status = Status {
            host: cfg.host(),
            source_url: spec.shown_url(),
            reference: spec.reference.clone(),
            path: spec.path.clone(),
            applied_revision: read_applied(&state_dir),
            apply_window: cfg.schedule.apply_window.clone(),
            ..Default::default()
        };
        let reconciler = Arc::new(reconciler);
        let live = reconciler.clone();
        let host = cfg.host();
        let services: crate::server::ServicesFn = Arc::new(move || {
            let (r, h) = (live.clone(), host.clone());
            Box::pin(async move { r.services(&h).await })
        });
        let app = AppState {
            status: Arc::new(RwLock::new(status)),
            trigger: Trigger::new(),
            metrics,
            control: Arc::new(Control::load(&state_dir)),
            secret,
            watch_ref: spec.reference.clone(),
            forwarder: None,
            guard: Arc::new(crate::server::auth::ApiGuard::new(cfg.listen(), token)),
            services: Some(services),
            notifier: None,
        };
        let template = ReconcileOptions {
            prune: cfg.reconcile.prune,
            prune_volumes: cfg.reconcile.prune_volumes,
            allow_empty: cfg.reconcile.allow_empty,
            env_file: cfg.reconcile.env_file.clone(),
            policy: cfg.policy(),
            data_root: cfg.data_root(),
            ..Default::default()
        };
        Ok(Self {
            template,
            window: cfg.schedule.window_schedule()?,
            source: Arc::new(Source::new(spec, &state_dir)),
            reconciler,
            state_dir,
            app,
            cfg,
            invalid_commit: None,
            applied_ok: false,
            applied_snapshot: None,
            outcomes: tokio::sync::broadcast::channel(OUTCOME_BACKLOG).0,
        })
    }

    /// Start every reconcile from `t` (CLI flags) instead of the config's `reconcile:` section.
    pub fn with_template(mut self, t: ReconcileOptions) -> Self {
        self.template = t;
        self
    }

    /// Handles for other parts of the agent (drift watcher → `trigger().fire(Cause::Drift)`).
    pub fn trigger(&self) -> Trigger {
        self.app.trigger.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.app.metrics.clone()
    }

    /// The outcome of every pass from now on, whichever way it ended (applied, failed,
    /// invalid, held, refused, fetch failed). Subscribe before `run`.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Outcome>> {
        self.outcomes.subscribe()
    }

    /// Record a pass in status and metrics and hand it to subscribers.
    fn publish(&self, outcome: Outcome) {
        let label = outcome.result.label();
        self.app.metrics.count_reconcile(label);
        self.status_mut(|st| {
            st.last_run_at = outcome.finished_at;
            st.last_result = Some(label.into());
            st.last_error = outcome
                .error_summary()
                .map(|e| crate::redact::redact(&e).into_owned());
            st.diagnostics = match &outcome.result {
                PassResult::Invalid { diagnostics } | PassResult::Refused { diagnostics, .. } => {
                    diagnostics.clone()
                }
                _ => Vec::new(),
            };
            if outcome.result.ran() {
                st.outcome = Some(outcome.clone());
            }
        });
        // No subscriber is fine: the send only fails when nobody listens.
        let _ = self.outcomes.send(Arc::new(outcome));
    }

    /// Serve and loop until `shutdown` resolves. A run in progress is finished first (a
    /// reconcile is never cut in half); a fetch in progress is abandoned (snapshots are
    /// written aside and renamed, so nothing half-made is left in use).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DaemonError> {
        // Notifications and commit status: a subscriber of this daemon's outcomes.
        self.app.notifier = crate::notify::Notifier::for_daemon(
            &self.cfg,
            self.subscribe(),
            self.app.metrics.notify.clone(),
        )
        .map_err(ConfigError::from)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let addr = self.cfg.listen();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| crate::server::ServerError::Bind { addr, source })?;
        let router = crate::server::router(self.app.clone(), self.cfg.webhook.max_body());
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(crate::server::serve(listener, router, async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        tracing::info!(%addr, url = %self.source.spec().shown_url(), "daemon listening");

        let mut tasks = Vec::new();
        let src_cfg = self.cfg.source.clone().expect("checked in new");
        if let Some(every) = src_cfg.interval()? {
            let t = self.app.trigger.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate; startup already fires
                loop {
                    tick.tick().await;
                    t.fire(Cause::Poll);
                }
            }));
        }
        if let Some(c) = self.cfg.schedule.cron_schedule()? {
            tasks.push(tokio::spawn(schedule::run_cron(
                c,
                self.app.trigger.clone(),
            )));
        }
        if let Some(w) = self.window.clone() {
            tasks.push(tokio::spawn(schedule::run_window(
                w,
                self.app.trigger.clone(),
            )));
        }
        let _ref_watch = match self.source.spec().local_git_dir() {
            Some(dir) => {
                tracing::info!(git_dir = %dir.display(), "watching local repository refs");
                Some(watch::watch_refs(&dir, self.app.trigger.clone())?)
            }
            None => None,
        };

        self.app.trigger.fire(Cause::Startup);
        tokio::pin!(shutdown);
        // Fetch and reconcile do not share one slot: while a fetch runs (or stalls), drift is
        // repaired from the snapshot already applied; other causes wait for the fetch and then
        // get one follow-up run, since the running fetch may predate them.
        let mut inflight: Option<(tokio::task::JoinHandle<_>, Pending)> = None;
        let mut follow_up: Vec<Cause> = Vec::new();
        loop {
            tokio::select! {
                p = self.app.trigger.next(SETTLE) => {
                    let drift_only = p.causes.iter().all(|c| *c == Cause::Drift);
                    match (&inflight, self.applied_snapshot.clone()) {
                        (_, Some(o)) if drift_only => self.apply(&p, o).await,
                        (Some(_), _) => follow_up.extend(p.causes),
                        (None, _) => inflight = Some((self.start_fetch(), p)),
                    }
                }
                done = async { (&mut inflight.as_mut().expect("guarded").0).await }, if inflight.is_some() => {
                    let (_, pending) = inflight.take().expect("guarded");
                    let synced = match done {
                        Ok((res, started)) => self.fetched(res, started),
                        Err(e) => {
                            tracing::error!(error = %e, "fetch task ended abnormally");
                            None
                        }
                    };
                    if let Some(outcome) = synced {
                        // Deliberately not raced against shutdown: finish the apply.
                        self.apply(&pending, outcome).await;
                    }
                    for c in follow_up.drain(..) {
                        self.app.trigger.fire(c);
                    }
                }
                _ = &mut shutdown => {
                    if inflight.is_some() {
                        tracing::info!("shutdown during fetch: abandoning it");
                    }
                    break;
                }
            }
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            t.abort();
        }
        match server.await {
            Ok(r) => r?,
            Err(e) => tracing::warn!(error = %e, "server task ended abnormally"),
        }
        tracing::info!("daemon stopped");
        Ok(())
    }

    fn status_mut(&self, f: impl FnOnce(&mut Status)) {
        let mut st = self.app.status.write().expect("status lock poisoned");
        f(&mut st);
        st.suspended = self.app.control.suspended();
        st.pending = st.fetched_revision.is_some() && st.fetched_revision != st.applied_revision;
        if !st.pending {
            st.pending_reason = None;
        }
    }

    /// The fetch as a task of its own, so the loop keeps repairing drift while it runs.
    fn start_fetch(&self) -> tokio::task::JoinHandle<(Result<SyncOutcome, SourceError>, Instant)> {
        let src = self.source.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            // A server that trickles bytes defeats every per-read limit: past `total` the fetch
            // is abandoned (snapshots are written aside and renamed, so nothing half-made is used).
            let total = src.spec().timeouts.total;
            let url = src.spec().shown_url();
            let fail = |message: String| SourceError::Fetch { url, message };
            let blocking = tokio::task::spawn_blocking(move || src.sync());
            let res = match tokio::time::timeout(total, blocking).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(fail(format!("fetch task failed: {e}"))),
                Err(_) => Err(fail(format!(
                    "no answer within source.timeouts.total ({}); fetch abandoned",
                    humantime::format_duration(total)
                ))),
            };
            (res, started)
        })
    }

    fn fetched(
        &mut self,
        res: Result<SyncOutcome, SourceError>,
        started: Instant,
    ) -> Option<SyncOutcome> {
        self.app
            .metrics
            .fetch_duration
            .observe(started.elapsed().as_secs_f64());
        let now = Some(Utc::now());
        match res {
            Ok(o) => {
                tracing::debug!(commit = %o.commit, ms = started.elapsed().as_millis() as u64, "fetched");
                self.status_mut(|st| {
                    st.fetched_revision = Some(o.commit.clone());
                    st.fetched_summary = Some(o.summary.clone());
                    st.fetched_at = now;
                });
                Some(o)
            }
            Err(SourceError::Unsafe { commit, problems }) => {
                tracing::error!(%commit, problems = problems.len(), "revision refused: unsafe tree entries");
                for p in &problems {
                    tracing::error!(%commit, problem = %p, "unsafe entry");
                }
                self.status_mut(|st| {
                    st.fetched_revision = Some(commit.clone());
                    st.fetched_at = now;
                    st.pending_reason = Some("refused (unsafe tree)".into());
                });
                self.publish(Outcome::stopped(
                    self.cfg.host(),
                    Some(commit.clone()),
                    PassResult::Refused {
                        message: format!("revision {commit} refused: unsafe tree entries"),
                        diagnostics: problems.iter().map(DiagnosticView::from).collect(),
                    },
                ));
                None
            }
            Err(SourceError::Unverified { commit, message }) => {
                tracing::error!(%commit, reason = %message, "revision refused: signature check failed");
                self.status_mut(|st| {
                    st.fetched_revision = Some(commit.clone());
                    st.fetched_at = now;
                    st.pending_reason = Some("refused (signature)".into());
                });
                self.publish(Outcome::stopped(
                    self.cfg.host(),
                    Some(commit.clone()),
                    PassResult::Refused {
                        message: format!("revision {commit} refused: {message}"),
                        diagnostics: Vec::new(),
                    },
                ));
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "fetch failed; keeping the applied revision");
                self.publish(Outcome::stopped(
                    self.cfg.host(),
                    None,
                    PassResult::FetchFailed {
                        message: crate::redact::redact(&e.to_string()).into_owned(),
                    },
                ));
                None
            }
        }
    }

    async fn apply(&mut self, pending: &Pending, o: SyncOutcome) {
        let cause = pending.first();
        let applied = self
            .app
            .status
            .read()
            .expect("status lock")
            .applied_revision
            .clone();
        let same = applied.as_deref() == Some(o.commit.as_str());
        if same && self.applied_ok && pending.only_change_hints() {
            tracing::debug!(commit = %o.commit, "already applied; nothing to do");
            return;
        }
        let asked = pending
            .causes
            .iter()
            .any(|c| matches!(c, Cause::Manual | Cause::Resume));
        if self.invalid_commit.as_deref() == Some(o.commit.as_str()) && !asked {
            tracing::debug!(commit = %o.commit, "known-invalid revision; not retried");
            return;
        }
        self.status_mut(|st| st.last_trigger = Some(cause.as_str().into()));
        if self.app.control.suspended() {
            tracing::info!(commit = %o.commit, "suspended: fetched, not applied");
            self.status_mut(|st| st.pending_reason = Some("suspended".into()));
            self.publish(self.held(&o, cause, Hold::Suspended));
            return;
        }
        if !schedule::in_window(self.window.as_ref(), &chrono::Local::now()) {
            let next = self
                .window
                .as_ref()
                .and_then(|w| schedule::next_opening(w, &Utc::now()));
            tracing::info!(commit = %o.commit, next_window = ?next, "outside the apply window: not applied");
            self.status_mut(|st| {
                st.pending_reason = Some("outside the apply window".into());
                st.next_window = next;
            });
            self.publish(self.held(&o, cause, Hold::OutsideWindow { next }));
            return;
        }

        let req = ApplyRequest {
            options: ReconcileOptions {
                desired_root: o.desired_root(),
                host: self.cfg.host(),
                env_file: self
                    .template
                    .env_file
                    .clone()
                    .or_else(|| self.cfg.reconcile.env_file.clone()),
                state_dir: self.state_dir.clone(),
                revision: Some(o.commit.clone()),
                source_url: Some(self.source.spec().url.clone()),
                source_ref: self.source.spec().reference.clone(),
                ..self.template.clone()
            },
            snapshot: o.clone(),
        };
        tracing::info!(commit = %o.commit, trigger = cause.as_str(), "reconciling");
        if let (Some(n), false) = (&self.app.notifier, same && self.applied_ok) {
            n.applying(&self.cfg.host(), &o.commit, &o.summary, &o.author);
        }
        let started = Instant::now();
        let result = self.reconciler.reconcile(&req).await;
        let secs = started.elapsed().as_secs_f64();
        self.app.metrics.reconcile_duration.observe(secs);
        let done = Some(Utc::now());
        let host = self.cfg.host();
        let mut outcome = crate::reconcile::outcome_of(&host, Some(o.commit.clone()), result);
        outcome.trigger = Some(cause.as_str().into());
        outcome.summary = Some(o.summary.clone());
        outcome.author = Some(o.author.clone());
        match &outcome.result {
            PassResult::Applied | PassResult::Failed => {
                let ok = outcome.ok();
                self.app.metrics.clusters.update(&outcome.clusters);
                if pending.causes.contains(&Cause::Drift) && outcome.changed() > 0 {
                    self.app
                        .metrics
                        .drift_repairs
                        .inc_by(outcome.changed() as u64);
                }
                self.app.metrics.set_applied(&o.commit);
                if let Err(e) = write_applied(&self.state_dir, &o.commit) {
                    tracing::warn!(error = %e, "could not persist the applied revision");
                }
                tracing::info!(commit = %o.commit, changed = outcome.changed(), failed = outcome.failed, secs, "reconciled");
                self.applied_ok = ok;
                self.applied_snapshot = Some(o.clone());
                self.invalid_commit = None;
                self.status_mut(|st| {
                    st.applied_revision = Some(o.commit.clone());
                    st.applied_at = done;
                });
                self.publish(outcome);
            }
            PassResult::Invalid { diagnostics } => {
                for d in diagnostics {
                    tracing::error!(commit = %o.commit, problem = %d, "invalid desired state");
                }
                self.invalid_commit = Some(o.commit.clone());
                self.publish(outcome);
                let still = applied.as_deref().unwrap_or("nothing").to_string();
                self.status_mut(|st| {
                    st.last_error = st
                        .last_error
                        .take()
                        .map(|e| format!("{e}; still running {still}"));
                    st.pending_reason = Some("invalid desired state".into());
                });
            }
            _ => {
                tracing::error!(commit = %o.commit, error = ?outcome.error_summary(), "reconcile failed");
                self.applied_ok = false;
                self.publish(outcome);
            }
        }
        let services = self.reconciler.services(&self.cfg.host()).await;
        let mut by_state: std::collections::BTreeMap<&str, i64> = Default::default();
        for s in &services {
            *by_state.entry(s.state.as_str()).or_default() += 1;
        }
        self.app.metrics.set_managed_containers(by_state);
        self.status_mut(|st| st.services = services.clone());
        let applied = self
            .app
            .status
            .read()
            .expect("status lock")
            .applied_revision
            .clone();
        let mut keep = vec![o.commit.as_str()];
        if let Some(a) = applied.as_deref() {
            keep.push(a);
        }
        if let Err(e) = crate::source::gc_snapshots(&self.source.snapshots_dir(), &keep) {
            tracing::warn!(error = %e, "snapshot cleanup failed");
        }
    }
}

impl<R: Reconciler> Daemon<R> {
    fn held(&self, o: &SyncOutcome, cause: Cause, reason: Hold) -> Outcome {
        let mut out = Outcome::stopped(
            self.cfg.host(),
            Some(o.commit.clone()),
            PassResult::Held { reason },
        );
        out.trigger = Some(cause.as_str().into());
        out.summary = Some(o.summary.clone());
        out.author = Some(o.author.clone());
        out
    }
}

fn applied_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("applied-revision")
}

fn read_applied(state_dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(applied_file(state_dir))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn write_applied(state_dir: &std::path::Path, commit: &str) -> std::io::Result<()> {
    let tmp = state_dir.join(".applied-revision.tmp");
    std::fs::write(&tmp, format!("{commit}\n"))?;
    std::fs::rename(tmp, applied_file(state_dir))
}
