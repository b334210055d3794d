//! The daemon side: each pass's typed [`Outcome`] (from `Daemon::subscribe`) becomes the events
//! people are told about. A subscriber task, not a loop of its own: it only reads outcomes.
//!
//! - `applied`: a revision applied with every item converged — sent when something changed or
//!   the revision is new (not for a startup or poll pass that found everything in place);
//! - `drift-repaired`: a drift pass that changed something; `failed`: `Failed` or `Error`;
//! - `invalid`, `refused`, `held`: as the pass says; `rolled-back`: a result labelled so;
//! - a failed fetch is the agent's own trouble (logs, status, metrics), not the commit's;
//! - a pass whose rollout is still watched (`Outcome::watch`) says nothing yet: the watch's
//!   end publishes it again with the verdict.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::event::{Event, EventKind, ServiceChange};
use super::Notifier;
use crate::outcome::{Action, Change, Outcome, PassResult, Subject, SubjectKind};

/// What the translation remembers between passes.
#[derive(Debug, Default)]
pub struct Translate {
    /// The last revision applied with every item converged.
    last_ok: Option<String>,
    /// The last revision rolled back: its later passes (failed services pinned to the last
    /// good revision, no rollout watched) are no news, unless a drift repair changed something.
    rolled_back: Option<String>,
}

impl Translate {
    pub fn event(&mut self, o: &Outcome) -> Option<Event> {
        // A pass whose rollout is still watched is told when the watch ends (the same pass,
        // with its verdict): one message per revision, and no `success` before it is earned.
        if o.watch.is_some() {
            return None;
        }
        let revision = o.revision.clone()?;
        let drift = o.trigger.as_deref() == Some("drift");
        let (kind, errors): (EventKind, Vec<String>) = match &o.result {
            PassResult::Applied => {
                let pinned =
                    self.rolled_back.as_deref() == Some(revision.as_str()) && o.rollout.is_none();
                let known = pinned
                    || self.last_ok.as_deref() == Some(revision.as_str())
                    || o.trigger.as_deref() == Some("startup");
                if !pinned {
                    self.last_ok = Some(revision.clone());
                }
                match (o.changes.is_empty(), drift) {
                    (true, true) => return None,
                    (true, false) if known => return None,
                    (false, true) => (EventKind::DriftRepaired, Vec::new()),
                    _ => (EventKind::Applied, Vec::new()),
                }
            }
            PassResult::Failed => (EventKind::Failed, errors_of(o)),
            PassResult::Error { message } => (EventKind::Failed, vec![message.clone()]),
            PassResult::Invalid { diagnostics } => (
                EventKind::Invalid,
                diagnostics.iter().map(ToString::to_string).collect(),
            ),
            PassResult::Refused {
                message,
                diagnostics,
            } => (
                EventKind::Refused,
                std::iter::once(message.clone())
                    .chain(diagnostics.iter().map(ToString::to_string))
                    .collect(),
            ),
            PassResult::Held { reason } => (EventKind::Held, vec![reason.to_string()]),
            PassResult::FetchFailed { .. } => return None,
            PassResult::RolledBack { .. } => {
                self.rolled_back = Some(revision.clone());
                (EventKind::RolledBack, errors_of(o))
            }
        };
        let mut e = Event::new(kind, &o.host, &revision).with_errors(errors);
        e.services = o.changes.iter().map(service_change).collect();
        e.summary = o.summary.clone().unwrap_or_default();
        e.author = o.author.clone().unwrap_or_default();
        if let Some(at) = o.finished_at {
            e.at = at;
        }
        Some(e)
    }
}

fn errors_of(o: &Outcome) -> Vec<String> {
    o.errors.iter().map(|e| e.message.clone()).collect()
}

fn subject(s: &Subject) -> String {
    match (s.kind, &s.stack) {
        (SubjectKind::Service, Some(stack)) => format!("{stack}/{}", s.name),
        (SubjectKind::Service, None) => s.name.clone(),
        (k, _) => format!("{} {}", format!("{k:?}").to_lowercase(), s.name),
    }
}

fn service_change(c: &Change) -> ServiceChange {
    let change = match &c.action {
        Action::Create => "created".to_string(),
        Action::Recreate { reasons } if reasons.is_empty() => "recreated".into(),
        Action::Recreate { reasons } => format!("recreated ({})", reasons.join(", ")),
        Action::Adopt { from } => format!("adopted from {from}"),
        Action::Start => "started".into(),
        Action::Restart { reason } => format!("restarted ({reason})"),
        Action::Remove => "removed".into(),
        Action::Pull => "pulled".into(),
        Action::Build => "built".into(),
        Action::Update => "updated".into(),
    };
    ServiceChange {
        service: subject(&c.subject),
        change,
    }
}

/// Read outcomes until the daemon stops, publishing what each means. Falling behind (64
/// outcomes) loses only the skipped ones, and says so.
pub async fn run(mut rx: broadcast::Receiver<Arc<Outcome>>, notifier: Arc<Notifier>) {
    let mut t = Translate::default();
    loop {
        match rx.recv().await {
            Ok(o) => {
                if let Some(e) = t.event(&o) {
                    notifier.publish(&e);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "notifications fell behind; outcomes skipped");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ItemError;

    fn outcome(result: PassResult, trigger: &str, changes: Vec<Change>) -> Outcome {
        Outcome {
            host: "lab-01".into(),
            revision: Some("abc1234def".into()),
            result,
            trigger: Some(trigger.into()),
            changes,
            ..Default::default()
        }
    }

    fn web(action: Action) -> Change {
        Change {
            subject: Subject {
                kind: SubjectKind::Service,
                stack: Some("apps".into()),
                name: "web".into(),
            },
            action,
            line: String::new(),
        }
    }

    #[test]
    fn quiet_passes_say_nothing_and_news_is_told() {
        let mut t = Translate::default();
        // A restart finding everything in place is not news.
        assert!(t
            .event(&outcome(PassResult::Applied, "startup", vec![]))
            .is_none());
        assert!(t
            .event(&outcome(PassResult::Applied, "poll", vec![]))
            .is_none());
        let drift = t
            .event(&outcome(
                PassResult::Applied,
                "drift",
                vec![web(Action::Start)],
            ))
            .expect("a repair is told");
        assert_eq!(drift.kind, EventKind::DriftRepaired);
        assert_eq!(drift.services_text(), "\n- apps/web: started");
        let mut failed = outcome(
            PassResult::Failed,
            "webhook",
            vec![web(Action::Recreate {
                reasons: vec!["image".into()],
            })],
        );
        failed.errors = vec![ItemError::new(None, "apps/web: exited 1")];
        let e = t.event(&failed).expect("a failure is told");
        assert_eq!(
            (e.kind, e.errors.clone(), e.services_text()),
            (
                EventKind::Failed,
                vec!["apps/web: exited 1".to_string()],
                "\n- apps/web: recreated (image)".to_string()
            )
        );
        let mut next = outcome(PassResult::Applied, "poll", vec![]);
        next.revision = Some("fff".into());
        assert_eq!(t.event(&next).map(|e| e.kind), Some(EventKind::Applied));
        let fetch = outcome(
            PassResult::FetchFailed {
                message: "x".into(),
            },
            "poll",
            vec![],
        );
        assert!(t.event(&fetch).is_none());
        let held = outcome(
            PassResult::Held {
                reason: crate::outcome::Hold::Suspended,
            },
            "poll",
            vec![],
        );
        let e = t.event(&held).expect("a hold is told");
        assert_eq!(
            (e.kind, e.errors),
            (EventKind::Held, vec!["suspended".to_string()])
        );
    }

    #[test]
    fn a_rolled_back_revision_is_told_once_and_its_pinned_passes_are_quiet() {
        let mut t = Translate::default();
        let mut back = outcome(
            PassResult::RolledBack {
                to: "good".into(),
                services: vec!["apps/web".into()],
            },
            "webhook",
            vec![web(Action::Recreate { reasons: vec![] })],
        );
        back.errors = vec![ItemError::new(None, "apps/web: rollout failed: unhealthy")];
        let e = t.event(&back).expect("a rollback is told");
        assert_eq!(e.kind, EventKind::RolledBack);
        // Later passes run the revision with apps/web pinned: nothing new to say.
        assert!(t
            .event(&outcome(PassResult::Applied, "poll", vec![]))
            .is_none());
        let drift = outcome(PassResult::Applied, "drift", vec![web(Action::Start)]);
        assert_eq!(
            t.event(&drift).map(|e| e.kind),
            Some(EventKind::DriftRepaired)
        );
        // Asked for again and healthy this time: applied is news.
        let mut again = outcome(
            PassResult::Applied,
            "manual",
            vec![web(Action::Recreate { reasons: vec![] })],
        );
        again.rollout = Some(Default::default());
        assert_eq!(t.event(&again).map(|e| e.kind), Some(EventKind::Applied));
    }

    /// Every paced repair of a crash loop is a drift pass starting the same service: the same
    /// event each time, so a target is told once (until its reminder), not once per restart.
    #[test]
    fn a_crash_loops_repairs_are_one_notification() {
        let mut t = Translate::default();
        let mut dedup = super::super::dedup::Dedup::default();
        let now = chrono::Utc::now();
        let sent: Vec<bool> = (0..5)
            .map(|i| {
                let repair = outcome(PassResult::Applied, "drift", vec![web(Action::Start)]);
                let e = t.event(&repair).expect("a drift repair is told");
                assert_eq!(e.kind, EventKind::DriftRepaired);
                let at = now + chrono::Duration::seconds(1 << i);
                dedup.admit("chat", e.kind.topic(), &e.fingerprint(), None, at)
            })
            .collect();
        assert_eq!(sent, [true, false, false, false, false]);
    }

    #[test]
    fn a_pass_whose_rollout_is_watched_is_told_once_when_the_watch_ends() {
        let mut t = Translate::default();
        let mut watched = outcome(
            PassResult::Applied,
            "webhook",
            vec![web(Action::Recreate { reasons: vec![] })],
        );
        watched.watch = Some(Default::default());
        assert!(
            t.event(&watched).is_none(),
            "not `applied` before the verdict"
        );
        let mut ended = watched.clone();
        ended.watch = None;
        ended.rollout = Some(Default::default());
        assert_eq!(t.event(&ended).map(|e| e.kind), Some(EventKind::Applied));
    }
}
