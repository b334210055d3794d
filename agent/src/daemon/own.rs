//! The agent's own changes are not drift: recreating a container stops and removes the old
//! one, and the engine reports that like any other stop. Events of a service the last pass
//! stopped or removed a container of, timed inside that pass, are the pass's own doing. A
//! container the pass only created or started is not: if it dies at once, that is a crash for
//! drift repair (paced, `pacing.rs`), not the pass's doing.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::drift::DriftEvent;
use crate::outcome::{Action, Outcome, SubjectKind};

#[derive(Debug, Default)]
pub struct OwnChanges {
    window: Option<(SystemTime, SystemTime)>,
    /// `stack/service` of every service the pass recreated, restarted, adopted or removed.
    services: BTreeSet<String>,
}

impl OwnChanges {
    /// What the pass that started at `started` and produced `outcome` touched (it ends now).
    pub fn of(outcome: &Outcome, started: SystemTime) -> Self {
        let stops = |a: &Action| {
            matches!(
                a,
                Action::Recreate { .. }
                    | Action::Restart { .. }
                    | Action::Adopt { .. }
                    | Action::Remove
            )
        };
        Self {
            window: Some((started, SystemTime::now())),
            services: services(outcome, stops),
        }
    }

    /// Did the last pass cause `ev`? A stop during the pass of a service it did not change is
    /// drift (someone else stopped it), and so is anything after the pass.
    pub fn caused(&self, ev: &DriftEvent) -> bool {
        let (Some((from, to)), Some(at)) = (self.window, ev.time) else {
            return false;
        };
        from <= at && at <= to && self.services.contains(&ev.service)
    }
}

/// `stack/service` of every service the pass gave a running container (created, recreated,
/// adopted, started or restarted): what drift pacing times a quick death from.
pub fn started_services(outcome: &Outcome) -> BTreeSet<String> {
    services(outcome, |a| {
        matches!(
            a,
            Action::Create
                | Action::Recreate { .. }
                | Action::Adopt { .. }
                | Action::Start
                | Action::Restart { .. }
        )
    })
}

fn services(outcome: &Outcome, which: impl Fn(&Action) -> bool) -> BTreeSet<String> {
    outcome
        .changes
        .iter()
        .filter(|c| c.subject.kind == SubjectKind::Service && which(&c.action))
        .map(|c| match &c.subject.stack {
            Some(stack) => format!("{stack}/{}", c.subject.name),
            None => c.subject.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::{Change, Subject};

    fn event(service: &str, time: Option<SystemTime>) -> DriftEvent {
        DriftEvent {
            container: "c".into(),
            service: service.into(),
            action: "die".into(),
            time,
            exit_code: Some(1),
        }
    }

    #[test]
    fn only_the_passs_services_inside_its_window_are_its_own() {
        let started = SystemTime::now() - Duration::from_secs(5);
        let change = |service: &str, action: Action| Change {
            subject: Subject::service(service),
            action,
            line: String::new(),
        };
        let outcome = Outcome {
            changes: vec![
                change(
                    "web/api",
                    Action::Recreate {
                        reasons: vec!["environment changed".into()],
                    },
                ),
                change("web/crash", Action::Start),
            ],
            ..Default::default()
        };
        let own = OwnChanges::of(&outcome, started);
        let during = Some(started + Duration::from_secs(1));
        assert!(own.caused(&event("web/api", during)));
        assert!(
            !own.caused(&event("web/crash", during)),
            "a container the pass only started, dying at once, crashed"
        );
        assert_eq!(
            started_services(&outcome),
            ["web/api".to_string(), "web/crash".to_string()].into()
        );
        assert!(
            !own.caused(&event("web/db", during)),
            "another service stopped by someone"
        );
        assert!(!own.caused(&event(
            "web/api",
            Some(SystemTime::now() + Duration::from_secs(5))
        )));
        assert!(!own.caused(&event("web/api", Some(started - Duration::from_secs(1)))));
        assert!(
            !own.caused(&event("web/api", None)),
            "a reconnect is never our own"
        );
        assert!(!OwnChanges::default().caused(&event("web/api", during)));
    }
}
