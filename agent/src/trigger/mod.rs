//! What wakes the daemon: interval polls, cron times, webhooks, local commits, edits in a
//! local directory source, control requests, drift. Every source calls [`Trigger::fire`]; the daemon loop is the only consumer,
//! so there is one reconcile at a time, and anything that fires during a run folds into at most
//! one follow-up run.

pub mod schedule;
pub mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("watching {path}: {source}")]
    Watch {
        path: std::path::PathBuf,
        source: notify::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    Startup,
    Poll,
    Cron,
    Webhook,
    LocalCommit,
    /// A file in a local directory source was saved.
    LocalEdit,
    Manual,
    Resume,
    WindowOpened,
    Drift,
}

impl Cause {
    /// Causes that only say "there may be a new commit": if the fetch finds the applied commit
    /// again, there is nothing to do. The others ask for a reconcile regardless.
    pub fn is_change_hint(self) -> bool {
        matches!(self, Cause::Webhook | Cause::LocalCommit | Cause::LocalEdit)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::Poll => "poll",
            Cause::Cron => "cron",
            Cause::Webhook => "webhook",
            Cause::LocalCommit => "local-commit",
            Cause::LocalEdit => "local-edit",
            Cause::Manual => "manual",
            Cause::Resume => "resume",
            Cause::WindowOpened => "window-opened",
            Cause::Drift => "drift",
        }
    }
}

/// The causes gathered since the last run, merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub causes: Vec<Cause>,
}

impl Pending {
    /// True if only change hints fired (webhook/local commit), see [`Cause::is_change_hint`].
    pub fn only_change_hints(&self) -> bool {
        !self.causes.is_empty() && self.causes.iter().all(|c| c.is_change_hint())
    }
    pub fn first(&self) -> Cause {
        *self
            .causes
            .first()
            .expect("a pending run has at least one cause")
    }
}

#[derive(Clone, Default)]
pub struct Trigger {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Trigger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask for a run. Never blocks and never queues more than one run.
    pub fn fire(&self, cause: Cause) {
        {
            let mut p = self.inner.pending.lock().expect("trigger lock poisoned");
            if !p.causes.contains(&cause) {
                p.causes.push(cause);
            }
        }
        // notify_one stores a single permit when nobody waits: repeated fires collapse into it.
        self.inner.notify.notify_one();
    }

    /// Wait for the next run. After the first wake-up, wait `settle` so a burst (a push
    /// delivering several hooks, a commit touching several refs) becomes one run. Drift alone
    /// does not wait: a stopped service is repaired at once, and events that come during that
    /// run (a removal's `destroy` after its `die`) fold into one follow-up. Safe to drop at any
    /// point (the daemon's loop races it): causes stay pending for the next call.
    pub async fn next(&self, settle: Duration) -> Pending {
        loop {
            let waiting = !self
                .inner
                .pending
                .lock()
                .expect("trigger lock")
                .causes
                .is_empty();
            if !waiting {
                self.inner.notify.notified().await;
            }
            let drift_only = {
                let p = self.inner.pending.lock().expect("trigger lock");
                p.causes.iter().all(|c| *c == Cause::Drift)
            };
            if !settle.is_zero() && !drift_only {
                tokio::time::sleep(settle).await;
            }
            let taken = std::mem::take(&mut *self.inner.pending.lock().expect("trigger lock"));
            if !taken.causes.is_empty() {
                return taken;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_coalesces_into_one_run_and_follow_up_is_single() {
        let t = Trigger::new();
        for _ in 0..50 {
            t.fire(Cause::Webhook);
        }
        t.fire(Cause::Poll);
        let p = t.next(Duration::ZERO).await;
        assert_eq!(p.causes, vec![Cause::Webhook, Cause::Poll]);
        assert!(!p.only_change_hints());

        // "During a run": more fires, then the loop comes back exactly once.
        for _ in 0..10 {
            t.fire(Cause::LocalCommit);
        }
        let p = t.next(Duration::ZERO).await;
        assert!(p.only_change_hints());
        let again = tokio::time::timeout(Duration::from_millis(100), t.next(Duration::ZERO)).await;
        assert!(again.is_err(), "no second follow-up without a new trigger");
    }

    #[tokio::test]
    async fn fires_during_settle_join_the_same_run() {
        let t = Trigger::new();
        t.fire(Cause::Webhook);
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.next(Duration::from_millis(200)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.fire(Cause::Manual);
        let p = waiter.await.expect("join");
        assert_eq!(p.causes, vec![Cause::Webhook, Cause::Manual]);
    }

    #[tokio::test]
    async fn drift_alone_runs_without_the_settle() {
        let t = Trigger::new();
        t.fire(Cause::Drift);
        // An hour's settle would hold a webhook; drift is repaired at once.
        let p = tokio::time::timeout(Duration::from_secs(30), t.next(Duration::from_secs(3600)))
            .await
            .expect("drift waits for no settle");
        assert_eq!(p.causes, vec![Cause::Drift]);
    }
}
