//! The daemon's side of rollouts (`crate::rollout`): after a rollout pass, watch what it
//! started in a task beside the loop; when the watch ends, judge it, roll back what failed, and
//! publish the pass again with its verdict.

use chrono::Utc;

use super::{own, ApplyRequest, Daemon, Reconciler};
use crate::outcome::{ItemError, Outcome, PassResult, Subject};
use crate::rollout::{PassRollout, Pins, RolloutReport, RolloutSettings, WatchPlan};

/// A rollout being watched: its task and what its end needs.
pub(super) struct Watching {
    pub(super) commit: String,
    /// The services watched: passes meanwhile leave their liveness to the watch.
    pub(super) services: std::collections::BTreeSet<String>,
    /// Drift came during the watch: a catch-up pass follows its end.
    pub(super) drifted: bool,
    pub(super) task: tokio::task::JoinHandle<RolloutReport>,
    /// The pass that started it: its end is this outcome again, with the verdict.
    outcome: Outcome,
    req: ApplyRequest,
}

impl<R: Reconciler> Daemon<R> {
    /// After a rollout pass: what to watch, or (nothing started) its verdict at once. A watch
    /// an agent restart cut short is watched again as well. The outcome keeps `watch` while
    /// its rollout is open (provisional: subscribers wait for the end).
    pub(super) async fn rollout_starts(
        &mut self,
        outcome: &mut Outcome,
        req: &ApplyRequest,
    ) -> Option<(WatchPlan, RolloutSettings)> {
        let mut plan = outcome.watch.take()?;
        let settings = req.options.rollout.watch.clone()?;
        let commit = outcome.revision.clone().unwrap_or_default();
        if let Some(earlier) = self.rollout.unfinished(&commit) {
            plan.merge(earlier);
        }
        if !outcome.result.ran() {
            return None;
        }
        if plan.is_empty() {
            self.verdict(outcome, req, RolloutReport::default()).await;
            return None;
        }
        self.rollout.begin(&commit, &plan);
        self.rollout_changed();
        outcome.watch = Some(plan.clone());
        Some((plan, settings))
    }

    pub(super) fn spawn_watch(
        &self,
        commit: &str,
        plan: WatchPlan,
        settings: RolloutSettings,
        outcome: Outcome,
        req: ApplyRequest,
    ) -> Watching {
        tracing::info!(%commit, services = ?plan.services(), "watching the rollout");
        let r = self.reconciler.clone();
        Watching {
            commit: commit.to_string(),
            services: plan.services().into_iter().collect(),
            drifted: false,
            task: tokio::spawn(async move { r.watch(plan, settings).await }),
            outcome,
            req,
        }
    }

    /// The watch of a rollout ended: its pass's outcome again, with the verdict (and the
    /// rollback's changes) — the one outcome notifications and commit status report.
    pub(super) async fn watch_ended(&mut self, w: Watching, report: RolloutReport) {
        let mut outcome = w.outcome;
        outcome.watch = None;
        let window_start = std::time::SystemTime::now();
        self.verdict(&mut outcome, &w.req, report).await;
        outcome.finished_at = Some(Utc::now());
        self.own = own::OwnChanges::of(&outcome, window_start);
        let rolled_back = matches!(outcome.result, PassResult::RolledBack { .. });
        self.ran(outcome, rolled_back).await;
    }

    /// Judge the rollout of `outcome`'s revision by `report`: failed services become failed
    /// items; when they may be rolled back, the pass runs again with them and their dependents
    /// pinned to the last good revision, and the outcome says `RolledBack`.
    async fn verdict(&mut self, outcome: &mut Outcome, req: &ApplyRequest, report: RolloutReport) {
        let commit = outcome.revision.clone().unwrap_or_default();
        // A failed rollout is the first thing to read (what its dependents then report follows).
        // A service the pass itself failed on already has its item (and is counted once).
        let failed: Vec<ItemError> = (report.failed.iter())
            .filter(|(service, _)| {
                let subject = Subject::service(service);
                !outcome
                    .errors
                    .iter()
                    .any(|e| e.subject.as_ref() == Some(&subject))
            })
            .map(|(service, why)| {
                let message = format!("{service}: rollout failed: {why}");
                ItemError::new(Some(Subject::service(service)), message)
            })
            .collect();
        outcome.failed += failed.len();
        outcome.errors.splice(0..0, failed);
        if !report.failed.is_empty() && outcome.result == PassResult::Applied {
            outcome.result = PassResult::Failed;
        }
        let rollback = self.rollout_settings.rollback;
        if let Some((good, services)) = self.rollout.record(&commit, &report, rollback) {
            tracing::warn!(%commit, %good, ?services, "rollout failed: rolling back to the last good revision");
            let mut again = req.clone();
            again.options.rollout = PassRollout {
                pins: self.pins(&good, services.clone()),
                ..Default::default()
            };
            match self.reconciler.reconcile(&again).await {
                Ok(back) => {
                    outcome.absorb(back.tried, back.failed, back.changes, back.errors);
                    outcome.result = PassResult::RolledBack {
                        to: good,
                        services: services.into_iter().collect(),
                    };
                }
                Err(e) => outcome.absorb(
                    1,
                    1,
                    Vec::new(),
                    vec![ItemError::new(
                        None,
                        format!("rollback to {good} failed: {e}"),
                    )],
                ),
            }
        }
        outcome.rollout = Some(report);
        self.rollout_changed();
    }

    /// The rollout state changed: persist it, show it in metrics and status.
    fn rollout_changed(&mut self) {
        if let Some(last) = &self.rollout.last {
            self.app
                .metrics
                .record_rollout(&last.revision, last.phase.as_str());
        }
        if let Err(e) = self.rollout.save(&self.state_dir, &self.cfg.host()) {
            tracing::warn!(error = %e, "could not persist the rollout state");
        }
        let (last, good) = (self.rollout.last.clone(), self.rollout.last_good.clone());
        self.status_mut(|st| {
            st.rollout = last;
            st.last_good_revision = good;
        });
    }

    /// `services` from the snapshot of revision `good` (kept by snapshot GC while it is the
    /// last good revision).
    pub(super) fn pins(
        &self,
        good: &str,
        services: std::collections::BTreeSet<String>,
    ) -> Option<Pins> {
        Some(Pins {
            revision: good.to_string(),
            desired_root: self.origin.desired_root_of(good)?,
            services,
        })
    }
}

/// A newly started rollout watch supersedes the one running (a newer revision was applied).
pub(super) fn replace_watch(watching: &mut Option<Watching>, new: Option<Watching>) {
    let Some(new) = new else {
        return;
    };
    if let Some(old) = watching.replace(new) {
        tracing::info!(commit = %old.commit, "rollout superseded by a newer revision; its watch ends");
        old.task.abort();
    }
}
