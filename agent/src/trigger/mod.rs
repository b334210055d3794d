//! What wakes the daemon: interval polls, cron times, webhooks, local commits, edits in a
//! local directory source, control requests, drift. Every source calls [`Trigger::fire`]; the daemon loop is the only consumer,
//! so there is one reconcile at a time, and anything that fires during a run folds into at most
//! one follow-up run.

pub mod schedule;
pub mod watch;

use std::sync::{Arc, Mutex};

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
    /// `reconcile --force`: roll the current revision out again, even a rolled-back one.
    Force,
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
            Cause::Force => "force",
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

    /// Wait for the next run: returns at once when anything has fired. No settle time: the
    /// daemon runs one pass at a time, so whatever fires while one runs (the rest of a push's
    /// hooks, a commit's other refs, a removal's `destroy` after its `die`) folds into one
    /// follow-up, and a follow-up that only hints at a change finds the applied revision again
    /// and does nothing (`only_change_hints`). Safe to drop at any point (the daemon's loop
    /// races it): causes stay pending for the next call.
    pub async fn next(&self) -> Pending {
        loop {
            let taken = std::mem::take(&mut *self.inner.pending.lock().expect("trigger lock"));
            if !taken.causes.is_empty() {
                return taken;
            }
            self.inner.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// What the daemon's loop would get now, without waiting.
    fn ready(t: &Trigger) -> Option<Pending> {
        t.next().now_or_never()
    }

    #[test]
    fn a_burst_of_hooks_is_one_run_and_at_most_one_follow_up() {
        let t = Trigger::new();
        for _ in 0..50 {
            t.fire(Cause::Webhook);
        }
        t.fire(Cause::Poll);
        let run = ready(&t).expect("the first hook starts a run at once");
        assert_eq!(run.causes, vec![Cause::Webhook, Cause::Poll]);
        assert!(!run.only_change_hints());

        // The rest of the burst arrives while that run works: one follow-up, which only hints
        // at a change (a fetch that finds the applied commit does nothing).
        for _ in 0..10 {
            t.fire(Cause::Webhook);
            t.fire(Cause::LocalCommit);
        }
        let follow_up = ready(&t).expect("one follow-up");
        assert_eq!(follow_up.causes, vec![Cause::Webhook, Cause::LocalCommit]);
        assert!(follow_up.only_change_hints());
        assert!(
            ready(&t).is_none(),
            "no second follow-up without a new trigger"
        );
    }

    #[test]
    fn every_cause_runs_without_waiting() {
        let t = Trigger::new();
        for cause in [
            Cause::Drift,
            Cause::Webhook,
            Cause::LocalEdit,
            Cause::Manual,
        ] {
            t.fire(cause);
            assert_eq!(ready(&t).expect("taken at once").causes, vec![cause]);
        }
    }

    #[tokio::test]
    async fn a_waiting_loop_wakes_on_a_fire() {
        let t = Trigger::new();
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.next().await });
        tokio::task::yield_now().await;
        t.fire(Cause::Drift);
        let p = waiter.await.expect("join");
        assert_eq!(p.causes, vec![Cause::Drift]);
    }
}
