//! `macula-gitops run`: the one daemon loop, for a git repository and a local directory alike
//! (`origin`). Triggers wake it; each run reads the source's newest revision (a git fetch and
//! snapshot, or a digest of the directory) and (unless suspended, outside the apply window, or
//! already done) hands its `desired-state/` to the reconciler. One run at a time; see `trigger`.
//! Every run ends in one `Outcome`, published to status, metrics and subscribers.
//!
//! A revision that fails validation or is unsafe is never applied: the last good revision stays
//! applied and running, and status carries the diagnostics until a later commit fixes them.

mod core;
mod origin;
mod own;
mod pacing;
mod rollouts;
mod service;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::Utc;

use crate::config::{AgentConfig, ConfigError};
use crate::drift::DriftEvent;
use crate::outcome::{DiagnosticView, Hold, Outcome, PassResult};
use crate::reconcile::{ReconcileError, ReconcileOptions};
use crate::rollout::{
    PassKind, PassRollout, RolloutReport, RolloutSettings, RolloutState, WatchPlan,
};
use crate::server::metrics::Metrics;
use crate::server::status::{ServiceState, Status};
use crate::server::{AppState, Control};
use crate::source::{SourceError, SyncOutcome};
use crate::trigger::{schedule, Cause, Pending, Trigger};
use rollouts::{replace_watch, Watching};

pub use self::core::{run, shutdown_signal, CoreReconciler};
pub use origin::Origin;
pub use service::{install_service, service_unit, ServiceOptions};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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

    /// Watch a rollout's services until each has a verdict (`crate::rollout`). The daemon runs
    /// it as a task of its own and drops it when a newer revision supersedes it. Default: all
    /// healthy at once (a reconciler whose passes start nothing to watch).
    fn watch(
        &self,
        plan: WatchPlan,
        _settings: RolloutSettings,
    ) -> impl Future<Output = RolloutReport> + Send {
        std::future::ready(RolloutReport {
            watched: plan.services(),
            ..Default::default()
        })
    }

    /// The managed services of `host` and their container state, for status and metrics.
    fn services(&self, _host: &str) -> impl Future<Output = Vec<ServiceState>> + Send {
        std::future::ready(Vec::new())
    }
}

pub struct Daemon<R> {
    cfg: AgentConfig,
    origin: Origin,
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
    /// Engine events of managed containers (`drift::watch`), when the daemon drives the engine.
    drift: Option<tokio::sync::mpsc::Receiver<DriftEvent>>,
    /// What the last pass touched: its own stops and removals are not drift.
    own: own::OwnChanges,
    /// Crash-looping services whose drift repair waits (`daemon/pacing.rs`).
    pacing: pacing::Pacing,
    /// The last good revision and the latest rollout, persisted (`crate::rollout`).
    rollout: RolloutState,
    /// The host's `rollout:`; never `rollback` for a local directory (`Daemon::new`).
    rollout_settings: RolloutSettings,
}

/// Outcomes a slow subscriber may fall behind by before it misses some (it is told how many).
const OUTCOME_BACKLOG: usize = 64;

impl<R: Reconciler> Daemon<R> {
    pub fn new(
        cfg: AgentConfig,
        reconciler: R,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DaemonError> {
        let state_dir = cfg.state_dir();
        std::fs::create_dir_all(&state_dir).map_err(|source| DaemonError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let origin = Origin::from_config(&cfg, &state_dir)?;
        let secret = cfg.webhook.secret()?.map(Arc::new);
        let token = crate::server::auth::write_token(&state_dir)?;
        let mut rollout_settings = cfg.rollout.resolve()?;
        // A local directory keeps no earlier revision to return to: its edits are watched and
        // judged (status, notifications), never rolled back. The watch runs beside the loop,
        // so the next edit is still applied at once.
        if !matches!(origin, Origin::Git(_)) {
            rollout_settings.rollback = false;
        }
        let rollout = match RolloutState::load(&state_dir, &cfg.host()) {
            Ok(mut r) => {
                // An agent from before rollouts: what it applied is the last good revision.
                if r == RolloutState::default() {
                    r.last_good = read_applied(&state_dir);
                }
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "rollout state unreadable; starting without a last good revision");
                RolloutState::default()
            }
        };
        let status = Status {
            rollout: rollout.last.clone(),
            last_good_revision: rollout.last_good.clone(),
            host: cfg.host(),
            source_url: origin.shown(),
            source_kind: origin.kind().into(),
            reference: origin.reference(),
            path: origin.path(),
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
            watch_ref: origin.reference(),
            forwarder: None,
            guard: Arc::new(crate::server::auth::ApiGuard::new(cfg.listen(), token)),
            services: Some(services),
            notifier: None,
        };
        let template = ReconcileOptions {
            source_url: origin.git_url(),
            source_ref: origin.reference(),
            ..ReconcileOptions::from_config(&cfg)?
        };
        Ok(Self {
            template,
            window: cfg.schedule.window_schedule()?,
            origin,
            reconciler,
            state_dir,
            app,
            cfg,
            invalid_commit: None,
            applied_ok: false,
            applied_snapshot: None,
            outcomes: tokio::sync::broadcast::channel(OUTCOME_BACKLOG).0,
            drift: None,
            own: Default::default(),
            pacing: Default::default(),
            rollout,
            rollout_settings,
        })
    }

    /// Serve routing forwards: every pass hands them the current forwards, status lists them.
    pub fn with_forwarder(mut self, f: crate::reconcile::SharedForwarder) -> Self {
        self.template.forwarder = Some(f.clone());
        self.app.forwarder = Some(f);
        self
    }

    /// Repair drift: each event of a managed container asks for a pass, unless the event is the
    /// last pass's own doing (a container it stopped, removed or recreated).
    pub fn with_drift(mut self, events: tokio::sync::mpsc::Receiver<DriftEvent>) -> Self {
        self.drift = Some(events);
        self
    }

    /// Handles for other parts of the agent (`trigger().fire(cause)`).
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
        self.announce(outcome, true)
    }

    /// `publish`, counting the outcome in `reconcile_total` only if `count`: a rollout's
    /// verdict republishes its pass, which counts again only when a rollback pass ran.
    fn announce(&self, outcome: Outcome, count: bool) {
        let label = outcome.result.label();
        if count {
            self.app.metrics.count_reconcile(label);
        }
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
        tracing::info!(%addr, source = %self.origin.shown(), "daemon listening");

        let mut tasks = Vec::new();
        if let Some(every) = self.cfg.interval()? {
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
        let _watch = self.origin.watch(self.app.trigger.clone())?;

        self.app.trigger.fire(Cause::Startup);
        tokio::pin!(shutdown);
        // Fetch and reconcile do not share one slot: while a fetch runs (or stalls), drift is
        // repaired from the snapshot already applied; other causes wait for the fetch and then
        // get one follow-up run, since the running fetch may predate them.
        let mut inflight: Option<(tokio::task::JoinHandle<_>, Pending)> = None;
        let mut follow_up: Vec<Cause> = Vec::new();
        // The rollout being watched, in a task of its own: drift repair and newer revisions
        // never wait for it. A newer rollout replaces it (the older revision is superseded).
        let mut watching: Option<Watching> = None;
        loop {
            // A paced repair is a timer in this loop: it never blocks it, and shutdown does not
            // wait for it.
            let paced_due = self.pacing.next_due();
            // Biased: events queued during a pass are judged (own change or drift) before the
            // next pass starts and replaces what "own" means.
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    if inflight.is_some() {
                        tracing::info!("shutdown during fetch: abandoning it");
                    }
                    if let Some(w) = watching.take() {
                        // Persisted as `watching`: the next start watches it again.
                        tracing::info!(commit = %w.commit, "shutdown during a rollout watch: resumed at the next start");
                        w.task.abort();
                    }
                    break;
                }
                Some(ev) = next_drift(&mut self.drift) => {
                    if self.own.caused(&ev) {
                        tracing::debug!(container = %ev.container, service = %ev.service, action = %ev.action, "own change, not drift");
                    } else {
                        tracing::info!(container = %ev.container, service = %ev.service, action = %ev.action, "drift");
                        if let Some(w) = watching.as_mut() {
                            w.drifted = true;
                        }
                        match self.pacing.event(&ev, Instant::now()) {
                            pacing::Repair::Now => self.app.trigger.fire(Cause::Drift),
                            pacing::Repair::After { delay, streak } => {
                                tracing::warn!(service = %ev.service, delay = %humantime::format_duration(delay), streak, "crash loop: drift repair paced");
                            }
                        }
                        self.show_paced();
                    }
                }
                _ = tokio::time::sleep_until(paced_due.unwrap_or_else(Instant::now).into()), if paced_due.is_some() => {
                    if self.pacing.fall_due(Instant::now()) {
                        self.app.trigger.fire(Cause::Drift);
                    }
                    self.show_paced();
                }
                p = self.app.trigger.next() => {
                    // A local directory is read in a moment and may have changed since: drift
                    // repair reads it like any pass. A git fetch may stall: repair from the
                    // applied snapshot.
                    let drift_only = p.causes.iter().all(|c| *c == Cause::Drift)
                        && matches!(self.origin, Origin::Git(_));
                    match (&inflight, self.applied_snapshot.clone()) {
                        (_, Some(o)) if drift_only => {
                            let w = self.apply(&p, o, watching.as_ref()).await;
                            replace_watch(&mut watching, w);
                        }
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
                        let w = self.apply(&pending, outcome, watching.as_ref()).await;
                        replace_watch(&mut watching, w);
                    }
                    for c in follow_up.drain(..) {
                        self.app.trigger.fire(c);
                    }
                }
                done = async { (&mut watching.as_mut().expect("guarded").task).await }, if watching.is_some() => {
                    let w = watching.take().expect("guarded");
                    let catch_up = w.drifted;
                    match done {
                        Ok(report) => self.watch_ended(w, report).await,
                        Err(e) => tracing::error!(commit = %w.commit, error = %e, "rollout watch ended abnormally"),
                    }
                    // Drift during the watch left the watched services' liveness to it: what
                    // the verdict (and any rollback) did not settle is repaired now.
                    if catch_up {
                        self.app.trigger.fire(Cause::Drift);
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
        // No outcome comes after this: the notifier reads the last ones and delivers them.
        drop(self.outcomes);
        if let Some(n) = &self.app.notifier {
            n.flush(crate::notify::FLUSH_WITHIN).await;
        }
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

    /// Status lists the services whose repair is paced, with when it falls due.
    fn show_paced(&self) {
        let now = Utc::now();
        let paced = self
            .pacing
            .held(Instant::now())
            .into_iter()
            .map(|(s, left)| {
                (
                    s,
                    now + chrono::Duration::from_std(left).unwrap_or_default(),
                )
            })
            .collect();
        self.status_mut(|st| st.paced = paced);
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

    /// The read (fetch) as a task of its own, so the loop keeps repairing drift while it runs.
    fn start_fetch(&self) -> tokio::task::JoinHandle<(Result<SyncOutcome, SourceError>, Instant)> {
        let origin = self.origin.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            // Past the deadline the read is abandoned (snapshots are written aside and renamed,
            // so nothing half-made is used); its thread ends with its socket.
            let (total, setting) = origin.deadline();
            let shown = origin.shown();
            let fail = |message: String| SourceError::Fetch {
                url: shown,
                message,
            };
            let blocking = tokio::task::spawn_blocking(move || origin.read());
            let res = match tokio::time::timeout(total, blocking).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(fail(format!("fetch task failed: {e}"))),
                Err(_) => Err(fail(format!(
                    "no answer within {setting} ({}); fetch abandoned",
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

    /// Apply revision `o`. `watching`: the rollout being watched. Returns the
    /// rollout to watch when this pass started one.
    async fn apply(
        &mut self,
        pending: &Pending,
        o: SyncOutcome,
        watching: Option<&Watching>,
    ) -> Option<Watching> {
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
            return None;
        }
        let forced = pending.causes.contains(&Cause::Force);
        let asked = forced
            || pending
                .causes
                .iter()
                .any(|c| matches!(c, Cause::Manual | Cause::Resume));
        if asked {
            self.pacing.release_all();
            self.show_paced();
        }
        if self.invalid_commit.as_deref() == Some(o.commit.as_str()) && !asked {
            tracing::debug!(commit = %o.commit, "known-invalid revision; not retried");
            return None;
        }
        self.status_mut(|st| st.last_trigger = Some(cause.as_str().into()));
        if self.app.control.suspended() {
            tracing::info!(commit = %o.commit, "suspended: fetched, not applied");
            self.status_mut(|st| st.pending_reason = Some("suspended".into()));
            self.publish(self.held(&o, cause, Hold::Suspended));
            return None;
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
            return None;
        }

        // The revision being watched is kept converged meanwhile (drift), not watched twice.
        let watched = watching.filter(|w| w.commit == o.commit && !forced);
        let pass = match watched {
            Some(_) => PassKind::Steady,
            None => self.rollout.pass_for(&o.commit, forced),
        };
        let rollout = PassRollout {
            pins: match &pass {
                PassKind::Pinned { good, services } => self.pins(good, services.clone()),
                _ => None,
            },
            watch: (pass == PassKind::Rollout).then(|| self.rollout_settings.clone()),
            // A paced service's liveness waits for its time, like a watched one's for the verdict.
            watched: watched
                .map(|w| w.services.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(self.pacing.held(Instant::now()).into_keys())
                .collect(),
        };
        let req = ApplyRequest {
            options: ReconcileOptions {
                rollout,
                desired_root: o.desired_root.clone(),
                revision: Some(o.commit.clone()),
                ..self.template.clone()
            },
            snapshot: o.clone(),
        };
        tracing::info!(commit = %o.commit, trigger = cause.as_str(), "reconciling");
        // A rolled-back revision's later passes keep its failure status: no new `pending`.
        let quiet = (same && self.applied_ok) || matches!(pass, PassKind::Pinned { .. });
        if let (Some(n), false) = (&self.app.notifier, quiet) {
            n.applying(&self.cfg.host(), &o.commit, &o.summary, &o.author);
        }
        let started = Instant::now();
        let window_start = std::time::SystemTime::now();
        let result = self.reconciler.reconcile(&req).await;
        self.app
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let host = self.cfg.host();
        let mut outcome = crate::reconcile::outcome_of(&host, Some(o.commit.clone()), result);
        outcome.trigger = Some(cause.as_str().into());
        outcome.summary = Some(o.summary.clone());
        outcome.author = Some(o.author.clone());
        self.own = own::OwnChanges::of(&outcome, window_start);
        let started_services = own::started_services(&outcome);
        self.pacing
            .started(started_services.iter().map(String::as_str), Instant::now());
        self.show_paced();
        let start = self.rollout_starts(&mut outcome, &req).await;
        match &outcome.result {
            PassResult::Applied | PassResult::Failed | PassResult::RolledBack { .. } => {
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
                tracing::info!(commit = %o.commit, changed = outcome.changed(), failed = outcome.failed, secs = started.elapsed().as_secs_f64(), "reconciled");
                self.applied_snapshot = Some(o.clone());
                self.invalid_commit = None;
                self.status_mut(|st| {
                    st.applied_revision = Some(o.commit.clone());
                    st.applied_at = Some(Utc::now());
                });
                self.ran(outcome.clone(), true).await;
            }
            PassResult::Invalid { diagnostics } => {
                for d in diagnostics {
                    tracing::error!(commit = %o.commit, problem = %d, "invalid desired state");
                }
                self.invalid_commit = Some(o.commit.clone());
                self.publish(outcome.clone());
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
                self.publish(outcome.clone());
            }
        }
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
        // A rollback re-applies the last good revision's snapshot: keep it.
        keep.extend(self.rollout.keep());
        self.origin.gc(&keep);
        start.map(|(plan, settings)| self.spawn_watch(&o.commit, plan, settings, outcome, req))
    }

    /// A pass that applied: publish it and read the engine's state for status and metrics.
    async fn ran(&mut self, outcome: Outcome, count: bool) {
        self.applied_ok = outcome.ok();
        self.announce(outcome, count);
        let services = self.reconciler.services(&self.cfg.host()).await;
        let mut by_state: std::collections::BTreeMap<&str, i64> = Default::default();
        for s in &services {
            *by_state.entry(s.state.as_str()).or_default() += 1;
        }
        self.app.metrics.set_managed_containers(by_state);
        self.status_mut(|st| st.services = services.clone());
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

/// The next drift event, or never when the daemon does not watch the engine.
async fn next_drift(
    rx: &mut Option<tokio::sync::mpsc::Receiver<DriftEvent>>,
) -> Option<DriftEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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
