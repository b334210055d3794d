//! The agent's own changes are not drift: recreating a container stops and removes the old
//! one, and the engine reports that like any other stop. Events of a service the last pass
//! changed, timed inside that pass, are the pass's own doing.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::drift::DriftEvent;
use crate::outcome::{Outcome, SubjectKind};

#[derive(Debug, Default)]
pub struct OwnChanges {
    window: Option<(SystemTime, SystemTime)>,
    /// `stack/service` of every service the pass created, recreated, started or removed.
    services: BTreeSet<String>,
}

impl OwnChanges {
    /// What the pass that started at `started` and produced `outcome` touched (it ends now).
    pub fn of(outcome: &Outcome, started: SystemTime) -> Self {
        let services = outcome
            .changes
            .iter()
            .filter(|c| c.subject.kind == SubjectKind::Service)
            .map(|c| match &c.subject.stack {
                Some(stack) => format!("{stack}/{}", c.subject.name),
                None => c.subject.name.clone(),
            })
            .collect();
        Self {
            window: Some((started, SystemTime::now())),
            services,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::{Action, Change, Subject};

    fn event(service: &str, time: Option<SystemTime>) -> DriftEvent {
        DriftEvent {
            container: "c".into(),
            service: service.into(),
            action: "die".into(),
            time,
        }
    }

    #[test]
    fn only_the_passs_services_inside_its_window_are_its_own() {
        let started = SystemTime::now() - Duration::from_secs(5);
        let outcome = Outcome {
            changes: vec![Change {
                subject: Subject::service("web/api"),
                action: Action::Recreate {
                    reasons: vec!["environment changed".into()],
                },
                line: String::new(),
            }],
            ..Default::default()
        };
        let own = OwnChanges::of(&outcome, started);
        let during = Some(started + Duration::from_secs(1));
        assert!(own.caused(&event("web/api", during)));
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
