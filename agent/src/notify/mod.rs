//! Telling people: chat/webhook notifications and commit status on the git host, for what a
//! pass did with a revision (applied, failed, rolled back, drift repaired, invalid or refused,
//! held by the apply window).
//!
//! ```text
//! pass outcome ──► Event ──► Notifier::publish (no I/O, never waits)
//!                              │ per target: wants this kind? de-duplicated? (dedup.rs)
//!                              ▼
//!                   bounded queue per target ──► delivery task: retries + backoff,
//!                              (deliver.rs)       deadline per call (Transport)
//!                                                 └─► stats.rs: /status + /metrics
//! ```
//!
//! When the daemon stops, [`Notifier::flush`] delivers what its last passes published, within
//! a deadline ([`FLUSH_WITHIN`]): a dead receiver cannot hold the exit.
//!
//! Formats: `sink.rs` (json+HMAC, ntfy, Slack, Discord, Mattermost, Matrix), `template.rs`
//! (message text), `commit_status/` (GitHub, Gitea/Forgejo, GitLab). All pure: an event in, an
//! [`request::HttpRequest`] out.

pub mod commit_status;
pub mod config;
pub mod dedup;
pub mod deliver;
pub mod event;
pub mod request;
pub mod sink;
pub mod stats;
pub mod subscriber;
pub mod template;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{CommitStatusConfig, NotificationsConfig, Settings};
pub use event::{Event, EventKind, ServiceChange};
pub use stats::{NotifyMetrics, Outcome, TargetStatus};

use commit_status::CommitStatus;
use dedup::Dedup;
use deliver::{Flush, HttpTransport, Job, Transport};
use sink::Sink;
use stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: {message}")]
    Secret { field: String, message: String },
}

/// How long the daemon's exit waits for the notifications of its last passes.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(5);

/// The handle the daemon publishes to. Cheap to share (`Arc`).
pub struct Notifier {
    sinks: Vec<(Sink, mpsc::Sender<Job>)>,
    commit_status: Option<(CommitStatus, mpsc::Sender<Job>)>,
    dedup: Mutex<Dedup>,
    reminder: Option<Duration>,
    stats: Stats,
    /// The flush deadline the delivery tasks watch.
    flush: watch::Sender<Option<Instant>>,
    /// Each target's delivery task, by target name; taken by `flush`.
    deliveries: Mutex<Vec<(String, JoinHandle<Vec<Job>>)>>,
    /// The daemon's subscriber task (`for_daemon`); taken by `flush`.
    subscriber: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// Start one delivery task per target (needs a tokio runtime) over `transport`.
    pub fn start<T: Transport>(
        settings: Settings,
        transport: Arc<T>,
        metrics: NotifyMetrics,
    ) -> Self {
        let stats = Stats::new(metrics);
        let (flush, flushed) = Flush::channel();
        let deliveries = Mutex::new(Vec::new());
        let queue = |name: &str, kind: &str| {
            stats.add_target(name, kind);
            let (tx, task) = deliver::spawn(
                name.to_string(),
                settings.queue,
                settings.retry,
                transport.clone(),
                stats.clone(),
                flushed.clone(),
            );
            lock(&deliveries).push((name.to_string(), task));
            tx
        };
        let sinks = settings
            .sinks
            .iter()
            .map(|s| (s.clone(), queue(&s.name, s.format.kind())))
            .collect();
        let commit_status = settings.commit_status.clone().map(|c| {
            let tx = queue(&c.name(), c.provider.as_str());
            (c, tx)
        });
        Self {
            sinks,
            commit_status,
            dedup: Mutex::new(match &settings.history {
                Some(f) => Dedup::persistent(f.clone()),
                None => Dedup::default(),
            }),
            reminder: settings.reminder,
            stats,
            flush,
            deliveries,
            subscriber: Mutex::new(None),
        }
    }

    /// Over HTTP, with the settings' deadline per call.
    pub fn start_http(settings: Settings, metrics: NotifyMetrics) -> Self {
        let transport = Arc::new(HttpTransport::new(settings.timeout));
        Self::start(settings, transport, metrics)
    }

    /// Hand `e` to every target that wants it. Never waits: a full queue drops the event (and
    /// counts it), so a dead receiver cannot hold up a reconcile.
    pub fn publish(&self, e: &Event) {
        let now = chrono::Utc::now();
        let mut dedup = lock(&self.dedup);
        for (sink, tx) in &self.sinks {
            if !sink.wants(e.kind) {
                continue;
            }
            let (topic, fp) = (e.kind.topic(), e.fingerprint());
            if !dedup.admit(&sink.name, topic, &fp, self.reminder, now) {
                self.stats
                    .record(&sink.name, e.kind.as_str(), Outcome::Suppressed, None);
                continue;
            }
            let job = Job {
                event: e.kind.as_str(),
                request: sink.request(e),
                topic,
                fingerprint: fp,
            };
            self.enqueue(&mut dedup, &sink.name, tx, job);
        }
        if let Some((cs, tx)) = &self.commit_status {
            let name = cs.name();
            let (Some(req), Some(fp)) = (cs.request(e), cs.fingerprint(e)) else {
                return;
            };
            // A status is set again only when it changes, however long it stays.
            if dedup.admit(&name, "status", &fp, None, now) {
                let job = Job {
                    event: e.kind.as_str(),
                    request: req,
                    topic: "status",
                    fingerprint: fp,
                };
                self.enqueue(&mut dedup, &name, tx, job);
            } else {
                self.stats
                    .record(&name, e.kind.as_str(), Outcome::Suppressed, None);
            }
        }
    }

    fn enqueue(&self, dedup: &mut Dedup, target: &str, tx: &mpsc::Sender<Job>, job: Job) {
        let (job, why) = match tx.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(j)) => {
                (j, "queue full (the receiver has not answered for a while)")
            }
            Err(mpsc::error::TrySendError::Closed(j)) => (j, deliver::UNSENT),
        };
        tracing::warn!(target, event = job.event, "notification dropped: {why}");
        dedup.forget(target, job.topic, &job.fingerprint);
        self.stats
            .record(target, job.event, Outcome::Dropped, Some(why.into()));
    }

    /// The daemon's hook as a revision starts applying (commit status `pending`).
    pub fn applying(&self, host: &str, revision: &str, summary: &str, author: &str) {
        let mut e = Event::new(EventKind::Applying, host, revision);
        e.summary = summary.into();
        e.author = author.into();
        self.publish(&e);
    }

    /// Start delivering what the daemon's passes end with (`subscriber::run`), when the agent
    /// config has any target; `None` otherwise.
    pub fn for_daemon(
        cfg: &crate::config::AgentConfig,
        outcomes: tokio::sync::broadcast::Receiver<Arc<crate::outcome::Outcome>>,
        metrics: NotifyMetrics,
    ) -> Result<Option<Arc<Self>>, NotifyError> {
        let mut settings = config::settings(cfg)?;
        for why in &settings.skipped {
            tracing::warn!("{why}");
        }
        settings.history = Some(cfg.state_dir().join("notify-sent.json"));
        if settings.is_empty() {
            return Ok(None);
        }
        let n = Arc::new(Self::start_http(settings, metrics));
        let task = tokio::spawn(subscriber::run(outcomes, n.clone()));
        *lock(&n.subscriber) = Some(task);
        Ok(Some(n))
    }

    /// Deliver what is queued, within `within`; for the daemon's exit. The subscriber
    /// (`for_daemon`) first reads the outcomes left — it ends once every sender of them is
    /// dropped — then every queue is sent in order, a pause between retries cut short. What is
    /// still unsent at the deadline is dropped, counted, and not remembered as sent (a restart
    /// tells it again); returns how many, by target.
    pub async fn flush(&self, within: Duration) -> Vec<(String, usize)> {
        let deadline = Instant::now() + within;
        let subscriber = lock(&self.subscriber).take();
        if let Some(mut s) = subscriber {
            if tokio::time::timeout_at(deadline, &mut s).await.is_err() {
                tracing::warn!("notifications: outcomes not all read before the deadline");
                s.abort();
            }
        }
        self.flush.send_replace(Some(deadline));
        let tasks = std::mem::take(&mut *lock(&self.deliveries));
        let mut left = Vec::new();
        // Each task ends by the deadline on its own: its calls and pauses race it.
        for (target, task) in tasks {
            let unsent = task.await.unwrap_or_default();
            if unsent.is_empty() {
                continue;
            }
            let mut dedup = lock(&self.dedup);
            for job in &unsent {
                dedup.forget(&target, job.topic, &job.fingerprint);
            }
            tracing::warn!(
                target,
                unsent = unsent.len(),
                "notifications not delivered before the agent stopped"
            );
            left.push((target, unsent.len()));
        }
        if left.is_empty() {
            tracing::debug!("notifications delivered");
        }
        left
    }

    /// Per target: last delivery and counts, for `/status`.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.stats.snapshot()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What these locks guard (handles, a record of sends) stays usable after a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
