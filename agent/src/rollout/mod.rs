//! Health-gated rollouts with automatic rollback.
//!
//! After a new revision is applied, every service the pass started or recreated is watched
//! (`watch`) until it is healthy — running, for a service without a healthcheck — or its
//! deadline passes (`x-macula.rollout_timeout`, else the host's `rollout.timeout`, default 2m).
//! When one fails and `rollback` is on, the services that failed and every service depending
//! on them (`depends_on` and stack order) are *pinned* to the last good revision: the daemon's
//! desired state becomes "revision R, with services X from revision G". Pins are persisted in
//! `<state>/hosts/<host>/rollout.json`, so drift repair and an agent restart keep the rolled-back
//! spec; they are dropped when a newer commit arrives or an operator asks for R again
//! (`macula-gitops reconcile --force`). The pass only says what to watch (`WatchPlan`); the
//! daemon watches in a task of its own, so drift repair and newer commits never wait for it
//! (a newer commit ends the watch of the one it supersedes). A rollback re-creates containers from G's spec: named volumes
//! and data directories are never touched (the same apply as any recreate).

pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::desired::spec::DesiredState;
use crate::outcome::{ItemError, Subject};
use crate::plan::{Plan, Step};
use crate::state::{self, StateError};

pub use watch::{Failure, HealthWatch, Target, Verdict};

/// How rollouts run on this host (agent config `rollout:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSettings {
    /// Deadline for a service to become healthy; `x-macula.rollout_timeout` overrides it.
    pub timeout: Duration,
    /// How long a service without a healthcheck must stay running to pass.
    pub stable: Duration,
    /// Re-apply the last good revision's spec for the services that failed.
    pub rollback: bool,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            stable: Duration::from_secs(10),
            rollback: true,
        }
    }
}

/// Services of the pass pinned to an older revision's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// The last good revision.
    pub revision: String,
    /// Its `desired-state/` directory (a kept source snapshot).
    pub desired_root: PathBuf,
    /// `stack/service` keys taken from it.
    pub services: BTreeSet<String>,
}

/// What the daemon asks of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassRollout {
    pub pins: Option<Pins>,
    /// Watch the services the pass changed, with these settings.
    pub watch: Option<RolloutSettings>,
    /// Services whose rollout is being watched, and paced ones not due yet: the pass leaves
    /// their liveness alone (`PlanOptions::watched`).
    pub watched: BTreeSet<String>,
}

/// An engine a rollout can watch (`watch::DockerHealth` for the Docker engine).
pub trait Watches {
    type Watch: HealthWatch;
    /// Start watching `containers` (by name); events from now on are seen.
    fn health_watch(&self, containers: &[String]) -> Self::Watch;
}

impl Watches for crate::engine::DockerEngine {
    type Watch = watch::DockerHealth;
    fn health_watch(&self, containers: &[String]) -> watch::DockerHealth {
        watch::DockerHealth::new(self.client(), containers)
    }
}

/// Watch `plan` on `engine`: the daemon runs this in a task of its own.
pub async fn watch_on<E: Watches>(engine: &E, plan: &WatchPlan, stable: Duration) -> RolloutReport {
    let names: Vec<String> = plan.targets.iter().map(|t| t.container.clone()).collect();
    let mut w = engine.health_watch(&names);
    check(&mut w, plan, stable).await
}

/// What the watch of one pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutReport {
    /// Every service watched (`stack/service`).
    pub watched: Vec<String>,
    /// The services that failed, with why.
    pub failed: BTreeMap<String, String>,
    /// The failed services and every service depending on them: what a rollback pins.
    pub affected: Vec<String>,
}

impl RolloutReport {
    pub fn healthy(&self) -> bool {
        self.failed.is_empty()
    }
}

/// What a rollout pass leaves to watch: the services it started or replaced, each with its
/// deadline, and for each what a rollback of it must pin (it and its dependents). Made by the
/// pass, which has the desired state; watched by the daemon in a task of its own, so drift
/// repair and newer commits never wait for a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchPlan {
    pub targets: Vec<Target>,
    /// `stack/service` → it and every service depending on it (`depends_on`, stack order).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependents: BTreeMap<String, BTreeSet<String>>,
}

impl WatchPlan {
    /// The services `plan` starts or replaces.
    pub fn of(desired: &DesiredState, plan: &Plan, settings: &RolloutSettings) -> Self {
        let changed: BTreeSet<&str> = plan
            .steps
            .iter()
            .filter(|s| s.starts_container())
            .filter_map(Step::service)
            .collect();
        let targets: Vec<Target> = desired
            .services
            .iter()
            .filter(|s| changed.contains(s.key().as_str()))
            .map(|s| Target {
                service: s.key(),
                container: s.container_name.clone(),
                timeout: s.rollout_timeout.unwrap_or(settings.timeout),
                not_started: None,
            })
            .collect();
        let dependents = targets
            .iter()
            .map(|t| {
                let one = BTreeSet::from([t.service.clone()]);
                (t.service.clone(), desired.dependents(&one))
            })
            .collect();
        Self {
            targets,
            dependents,
        }
    }

    /// Mark the targets the pass failed on (`errors` by `stack/service`): one without a
    /// container is judged failed at once, with that error.
    pub fn note_failures(&mut self, errors: &[ItemError]) {
        for t in &mut self.targets {
            let service = Subject::service(&t.service);
            let failed = errors.iter().find(|e| e.subject.as_ref() == Some(&service));
            if let Some(e) = failed {
                let prefix = format!("{}: ", t.service);
                let why = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
                t.not_started = Some(why.to_string());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn services(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.service.clone()).collect()
    }

    /// Add `earlier`'s targets this plan does not have (a watch an agent restart cut short).
    pub fn merge(&mut self, earlier: WatchPlan) {
        for t in earlier.targets {
            if !self.targets.iter().any(|m| m.service == t.service) {
                if let Some(d) = earlier.dependents.get(&t.service) {
                    self.dependents.insert(t.service.clone(), d.clone());
                }
                self.targets.push(t);
            }
        }
    }
}

/// Watch `plan`'s targets and say what failed and what a rollback would have to pin.
pub async fn check<W: HealthWatch>(w: &mut W, plan: &WatchPlan, stable: Duration) -> RolloutReport {
    let verdicts = watch::watch(w, &plan.targets, stable).await;
    let failed: BTreeMap<String, String> = verdicts
        .into_iter()
        .filter_map(|(k, v)| match v {
            Verdict::Failed(f) => Some((k, f.to_string())),
            Verdict::Healthy => None,
        })
        .collect();
    // Reachability distributes over union: the dependents of the failed set are the union of
    // each failed service's.
    let affected: BTreeSet<String> = failed
        .keys()
        .flat_map(|k| {
            plan.dependents
                .get(k)
                .cloned()
                .unwrap_or_else(|| BTreeSet::from([k.clone()]))
        })
        .collect();
    RolloutReport {
        watched: plan.services(),
        failed,
        affected: affected.into_iter().collect(),
    }
}

/// Replace the pinned services' specs with the last good revision's (`good`); a pinned
/// service the good revision did not have is left out (it is new and failed: not running it is
/// its last good state). Networks and volumes the good specs use are kept desired.
pub fn pin(state: &mut DesiredState, good: &DesiredState, pinned: &BTreeSet<String>) {
    let mut services = Vec::with_capacity(state.services.len());
    for s in std::mem::take(&mut state.services) {
        if !pinned.contains(&s.key()) {
            services.push(s);
            continue;
        }
        if let Some(g) = good.service(&s.key()) {
            for net in g.networks.keys() {
                if let Some(spec) = good.networks.get(net) {
                    state.networks.entry(net.clone()).or_insert(spec.clone());
                }
            }
            for m in &g.mounts {
                if let crate::desired::spec::MountSource::Volume { name } = &m.source {
                    if let Some(spec) = good.volumes.get(name) {
                        state.volumes.entry(name.clone()).or_insert(spec.clone());
                    }
                }
            }
            services.push(g.clone());
        }
    }
    state.services = services;
}

/// Where a host's rollout state lives.
pub fn state_path(state_dir: &Path, host: &str) -> PathBuf {
    state_dir.join("hosts").join(host).join("rollout.json")
}

/// A rollout's state, per revision, as status and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Applied; its changed services are being watched (`Rollout::watch`).
    Watching,
    /// Applied, its changed services watched and healthy.
    Healthy,
    /// Some services failed and there was nothing (or no leave) to roll back to.
    Failed,
    /// The failed services (and their dependents) run the last good revision's spec.
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Watching => "watching",
            Phase::Healthy => "healthy",
            Phase::Failed => "failed",
            Phase::RolledBack => "rolled-back",
        }
    }
}

/// What the daemon remembers between passes and restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The last revision whose rollout ended healthy: what a rollback returns to.
    pub last_good: Option<String>,
    /// The latest rollout: its revision, phase and failures.
    pub last: Option<Rollout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub revision: String,
    pub phase: Phase,
    pub at: DateTime<Utc>,
    /// `stack/service` → why it failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
    /// When rolled back: the revision the pinned services run, and which they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    /// While `Watching`: what is watched, so an agent restarted mid-watch watches it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchPlan>,
}

/// How the daemon applies a commit, given what it remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassKind {
    /// A revision not yet rolled out, asked for again (`reconcile --force`), or whose watch an
    /// agent restart cut short: apply it fully and watch.
    Rollout,
    /// The rolled-back revision: apply it with its failed services pinned to `good`.
    Pinned {
        good: String,
        services: BTreeSet<String>,
    },
    /// The revision already rolled out (healthy, or failed without rollback): keep it converged.
    Steady,
}

impl RolloutState {
    pub fn load(state_dir: &Path, host: &str) -> Result<Self, StateError> {
        Ok(state::read_json(&state_path(state_dir, host))?.unwrap_or_default())
    }

    pub fn save(&self, state_dir: &Path, host: &str) -> Result<(), StateError> {
        state::write_json(&state_path(state_dir, host), self)
    }

    /// `forced`: an operator asked for this revision again (`reconcile --force`): a
    /// rolled-back revision is rolled out again. A plain `reconcile` or `resume` keeps the pins.
    pub fn pass_for(&self, commit: &str, forced: bool) -> PassKind {
        match &self.last {
            Some(r) if r.revision == commit && r.phase == Phase::Watching => PassKind::Rollout,
            Some(r) if r.revision == commit && r.phase == Phase::RolledBack && !forced => {
                PassKind::Pinned {
                    good: r.pinned_to.clone().unwrap_or_default(),
                    services: r.pinned.iter().cloned().collect(),
                }
            }
            Some(r) if r.revision == commit && !forced => PassKind::Steady,
            _ if self.last_good.as_deref() == Some(commit) && !forced => PassKind::Steady,
            _ => PassKind::Rollout,
        }
    }

    /// `commit` is applied and `plan` watched from now on.
    pub fn begin(&mut self, commit: &str, plan: &WatchPlan) {
        self.last = Some(Rollout {
            revision: commit.to_string(),
            phase: Phase::Watching,
            at: Utc::now(),
            failed: BTreeMap::new(),
            pinned_to: None,
            pinned: Vec::new(),
            watch: Some(plan.clone()),
        });
    }

    /// What the watch of `commit` covered when an agent restart cut it short.
    pub fn unfinished(&self, commit: &str) -> Option<WatchPlan> {
        self.last
            .as_ref()
            .filter(|r| r.revision == commit && r.phase == Phase::Watching)
            .and_then(|r| r.watch.clone())
    }

    /// Record the watch of `commit`'s rollout. Returns the services to pin and the revision
    /// to pin them to when a rollback is due.
    pub fn record(
        &mut self,
        commit: &str,
        report: &RolloutReport,
        rollback: bool,
    ) -> Option<(String, BTreeSet<String>)> {
        let at = Utc::now();
        if report.healthy() {
            self.last_good = Some(commit.to_string());
            self.last = Some(Rollout {
                revision: commit.to_string(),
                phase: Phase::Healthy,
                at,
                failed: BTreeMap::new(),
                pinned_to: None,
                pinned: Vec::new(),
                watch: None,
            });
            return None;
        }
        let good = self.last_good.clone().filter(|g| rollback && g != commit);
        let phase = if good.is_some() {
            Phase::RolledBack
        } else {
            Phase::Failed
        };
        self.last = Some(Rollout {
            revision: commit.to_string(),
            phase,
            at,
            failed: report.failed.clone(),
            pinned_to: good.clone(),
            pinned: if good.is_some() {
                report.affected.clone()
            } else {
                Vec::new()
            },
            watch: None,
        });
        good.map(|g| (g, report.affected.iter().cloned().collect()))
    }

    /// Revisions whose snapshots must be kept: the last good one (a rollback's source).
    pub fn keep(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.last_good.iter().map(String::as_str).collect();
        if let Some(p) = self.last.as_ref().and_then(|r| r.pinned_to.as_deref()) {
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failed: &[&str], affected: &[&str]) -> RolloutReport {
        RolloutReport {
            watched: vec!["a/x".into(), "a/y".into()],
            failed: failed
                .iter()
                .map(|k| (k.to_string(), "exited with code 1".to_string()))
                .collect(),
            affected: affected.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_failed_rollout_pins_to_the_last_good_revision_until_a_newer_commit_or_an_operator() {
        let mut st = RolloutState::default();
        assert_eq!(st.pass_for("g", false), PassKind::Rollout);
        assert_eq!(st.record("g", &report(&[], &[]), true), None);
        assert_eq!(st.pass_for("g", false), PassKind::Steady);

        assert_eq!(st.pass_for("r", false), PassKind::Rollout);
        let pins = st.record("r", &report(&["a/x"], &["a/x", "a/y"]), true);
        let want: BTreeSet<String> = ["a/x".to_string(), "a/y".to_string()].into();
        assert_eq!(pins, Some(("g".to_string(), want.clone())));
        assert_eq!(st.last.as_ref().unwrap().phase, Phase::RolledBack);
        // Drift repair and later polls keep the pins; the operator asking rolls out again.
        assert_eq!(
            st.pass_for("r", false),
            PassKind::Pinned {
                good: "g".into(),
                services: want
            }
        );
        assert_eq!(st.pass_for("r", true), PassKind::Rollout);
        // A newer commit is rolled out; the good revision is still g.
        assert_eq!(st.pass_for("n", false), PassKind::Rollout);
        assert_eq!(st.keep(), ["g", "g"]);

        // Persisted: an agent restart keeps the pins.
        let dir = tempfile::tempdir().unwrap();
        st.save(dir.path(), "h").unwrap();
        assert_eq!(RolloutState::load(dir.path(), "h").unwrap(), st);
    }

    #[test]
    fn a_watch_cut_short_by_a_restart_is_watched_again() {
        let mut st = RolloutState::default();
        st.record("g", &report(&[], &[]), true);
        let plan = WatchPlan {
            targets: vec![Target {
                not_started: None,
                service: "a/x".into(),
                container: "x-1".into(),
                timeout: Duration::from_secs(30),
            }],
            dependents: BTreeMap::new(),
        };
        st.begin("r", &plan);
        let dir = tempfile::tempdir().unwrap();
        st.save(dir.path(), "h").unwrap();
        let st = RolloutState::load(dir.path(), "h").unwrap();
        // Even unasked, the revision is rolled out (watched) again, with what was watched.
        assert_eq!(st.pass_for("r", false), PassKind::Rollout);
        assert_eq!(st.unfinished("r"), Some(plan));
        assert_eq!(st.unfinished("n"), None);
        assert_eq!(st.last_good.as_deref(), Some("g"));
    }

    /// A service `a/<s>` in container `<s>`, with a minute to become healthy.
    fn target(s: &str) -> Target {
        Target {
            service: format!("a/{s}"),
            container: s.into(),
            timeout: Duration::from_secs(60),
            not_started: None,
        }
    }

    /// Containers that are as the test says, with no events.
    struct Fixed(BTreeMap<String, watch::Seen>);

    impl HealthWatch for Fixed {
        async fn next_event(&mut self) -> Option<String> {
            None
        }
        async fn inspect(&mut self, container: &str) -> watch::Seen {
            self.0.get(container).cloned().unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn a_failed_service_pins_itself_and_its_dependents_not_the_healthy_ones() {
        let plan = WatchPlan {
            targets: vec![target("db"), target("web")],
            dependents: BTreeMap::from([
                ("a/db".into(), ["a/db", "a/api"].map(String::from).into()),
                ("a/web".into(), ["a/web"].map(String::from).into()),
            ]),
        };
        let seen = |state: &str, code: i64, health: Option<&str>| watch::Seen {
            state: state.into(),
            exit_code: Some(code),
            health: health.map(Into::into),
            ..Default::default()
        };
        let mut w = Fixed(BTreeMap::from([
            ("db".to_string(), seen("exited", 3, None)),
            ("web".to_string(), seen("running", 0, Some("healthy"))),
        ]));
        let r = check(&mut w, &plan, Duration::from_secs(10)).await;
        assert_eq!(r.watched, ["a/db", "a/web"]);
        assert_eq!(
            r.failed,
            BTreeMap::from([("a/db".to_string(), "exited with code 3".to_string())])
        );
        assert_eq!(r.affected, ["a/api", "a/db"]);
    }

    #[tokio::test]
    async fn a_service_the_pass_could_not_start_fails_at_once_not_at_its_deadline() {
        let mut plan = WatchPlan {
            targets: vec![target("db"), target("web")],
            dependents: BTreeMap::new(),
        };
        let errors = [
            crate::outcome::ItemError::new(
                Some(Subject::service("a/db")),
                "a/db: not started, image postgres:16 is not available",
            ),
            crate::outcome::ItemError::new(
                Some(Subject::service("a/web")),
                "a/web: removing web-2: boom",
            ),
        ];
        plan.note_failures(&errors);
        // db has no container; web failed something but runs healthy: judged as it is.
        let mut w = Fixed(BTreeMap::from([(
            "web".to_string(),
            watch::Seen {
                state: "running".into(),
                health: Some("healthy".into()),
                ..Default::default()
            },
        )]));
        // The verdict comes without waiting for the deadline (a wait would end in `Timeout`).
        let r = check(&mut w, &plan, Duration::from_secs(10)).await;
        assert_eq!(
            r.failed,
            BTreeMap::from([(
                "a/db".to_string(),
                "not started, image postgres:16 is not available".to_string()
            )])
        );
    }

    #[test]
    fn without_rollback_or_a_good_revision_the_rollout_is_failed() {
        let mut st = RolloutState::default();
        assert_eq!(st.record("r", &report(&["a/x"], &["a/x"]), true), None);
        assert_eq!(st.last.as_ref().unwrap().phase, Phase::Failed);
        assert_eq!(st.pass_for("r", false), PassKind::Steady);
        st.record("g", &report(&[], &[]), true);
        assert_eq!(st.record("r2", &report(&["a/x"], &["a/x"]), false), None);
        assert_eq!(st.last.as_ref().unwrap().phase, Phase::Failed);
        assert_eq!(st.last_good.as_deref(), Some("g"));
    }
}
