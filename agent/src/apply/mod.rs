//! Executing a plan against an `Engine`: networks and volumes (in parallel), images (in
//! parallel), then every container at once — created ahead, started as soon as its own
//! `depends_on` conditions hold (`services.rs`, waits driven by engine events in `wait.rs`) —
//! then removals. A failed item does not stop the others: the outcome is a `{failed, tried}`
//! report listing each failure.

mod context;
mod replace;
mod services;
mod wait;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use crate::data;
use crate::desired::spec::DesiredState;
use crate::engine::{Engine, EngineError};
use crate::outcome::{Change, ItemError, Subject, SubjectKind};
use crate::plan::{Observed, Plan, Step};

#[derive(Debug, Clone)]
pub struct ApplyContext {
    /// The pass's revision, on every container it creates (`labels::REVISION`).
    pub revision: Option<String>,
    /// A rollback's pins: those services run the last good revision's specs, so their
    /// containers carry that revision instead.
    pub pins: Option<crate::rollout::Pins>,
    pub state_dir: PathBuf,
    /// Where read-write relative binds live (`crate::data`).
    pub data_root: PathBuf,
    /// `--prune-volumes`: a pruned container's anonymous volumes go with it.
    pub prune_volumes: bool,
    /// Upper bound on waiting for a dependency to become healthy or complete.
    pub health_timeout: Duration,
}

impl ApplyContext {
    /// The revision `service`'s containers run.
    fn revision_of(&self, service: &str) -> Option<String> {
        match &self.pins {
            Some(p) if p.services.contains(service) => Some(p.revision.clone()),
            _ => self.revision.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub tried: usize,
    pub failed: usize,
    /// What changed, in order.
    pub changes: Vec<Change>,
    /// One per failure, naming its subject.
    pub errors: Vec<ItemError>,
}

impl ApplyReport {
    fn ok(&mut self, step: &Step) {
        self.tried += 1;
        self.changes.extend(Change::of_step(step));
    }

    fn fail(&mut self, subject: Option<Subject>, message: impl Into<String>) {
        self.tried += 1;
        self.failed += 1;
        self.errors.push(ItemError::new(subject, message));
    }

    /// A step's result: done, or failed with a message naming its subject.
    fn step(&mut self, step: &Step, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok(step),
            Err(e) => self.fail(Subject::of_step(step), e),
        }
    }
}

/// `observed` is what `plan` was computed from: it says which containers already run.
pub async fn apply<E: Engine>(
    engine: &E,
    desired: &DesiredState,
    observed: &Observed,
    plan: &Plan,
    ctx: &ApplyContext,
) -> ApplyReport {
    let host = desired.host().to_string();
    let mut report = ApplyReport::default();

    // Networks and volumes in parallel (containers need them all); data directories here.
    let made = join_all(plan.steps.iter().map(|step| {
        let host = &host;
        async move {
            let result = match step {
                Step::CreateNetwork { network } => match desired.networks.get(network) {
                    Some(spec) => engine
                        .create_network(spec, host)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("network {network}: not in the desired state")),
                },
                Step::CreateVolume { volume } => match desired.volumes.get(volume) {
                    Some(spec) => engine
                        .create_volume(spec, host)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("volume {volume}: not in the desired state")),
                },
                _ => return None,
            };
            Some((step, result))
        }
    }))
    .await;
    for (step, result) in made.into_iter().flatten() {
        report.step(step, result);
    }
    for step in &plan.steps {
        if let Step::CreateData { data, .. } = step {
            let found = observed
                .data
                .iter()
                .find(|d| format!("{}/{}", d.stack, d.path) == *data);
            match found.map(|d| data::ensure(&ctx.data_root, &d.stack, &d.path, d.seed.as_deref()))
            {
                Some(Ok(_)) => report.ok(step),
                Some(Err(e)) => report.fail(Subject::of_step(step), e.to_string()),
                None => report.fail(
                    Subject::of_step(step),
                    format!("data {data}: not in the desired state"),
                ),
            }
        }
    }

    // Images in parallel; a service whose image failed is not attempted.
    let image_steps: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::PullImage { .. } | Step::BuildImage { .. }))
        .collect();
    let results = join_all(image_steps.iter().map(|s| async move {
        match s {
            Step::PullImage { image } => (image.clone(), engine.pull_image(image).await),
            Step::BuildImage { service, image } => {
                match desired.service(service).and_then(|s| s.build.as_ref()) {
                    Some(b) => (image.clone(), engine.build_image(b, image).await),
                    None => (
                        image.clone(),
                        Err(EngineError::Build {
                            image: image.clone(),
                            message: "no build section".into(),
                        }),
                    ),
                }
            }
            _ => unreachable!("filtered to image steps"),
        }
    }))
    .await;
    let mut failed_images = BTreeSet::new();
    for ((image, result), step) in results.into_iter().zip(&image_steps) {
        match result {
            Ok(()) => report.ok(step),
            Err(e) => {
                report.fail(Subject::of_step(step), e.to_string());
                failed_images.insert(image);
            }
        }
    }

    // Blocked subjects count as failures so a run with them exits non-zero.
    let mut blocked_services = BTreeSet::new();
    for step in &plan.steps {
        if let Step::Blocked { subject, reason } = step {
            report.fail(None, format!("{subject}: {reason}"));
            if let Some(name) = subject.strip_prefix("container ") {
                if let Some(s) = desired
                    .services
                    .iter()
                    .find(|s| s.replica_named(name).is_some())
                {
                    blocked_services.insert(s.key());
                }
            }
        }
    }

    // By service; a scaled service has one step per replica that changes.
    let mut container_steps: HashMap<String, Vec<&Step>> = HashMap::new();
    for s in plan.steps.iter().filter(|s| s.starts_container()) {
        if let Some(service) = s.service() {
            container_steps
                .entry(service.to_string())
                .or_default()
                .push(s);
        }
    }

    // Repo copies of services that keep running are verified too: one deleted or edited under
    // the state dir is re-made now, so a later restart or drift repair finds it intact.
    for spec in &desired.services {
        if !container_steps.contains_key(&spec.key()) {
            if let Err(e) = context::create_context(spec, &host, ctx) {
                report.fail(Some(Subject::service(&spec.key())), e.to_string());
            }
        }
    }

    let pass = services::Pass {
        engine,
        desired,
        observed,
        ctx,
        host: &host,
        steps: container_steps,
        failed_images: &failed_images,
        blocked: &blocked_services,
        existing: current_ids(observed, desired),
    };
    for (service, lines) in services::run(&pass).await {
        for line in lines {
            match line {
                Ok(step) => report.ok(step),
                Err(e) => report.fail(Some(Subject::service(&service)), e),
            }
        }
    }

    for step in &plan.steps {
        let result = match step {
            Step::RemoveContainer { id, .. } if ctx.prune_volumes => {
                // `rm -v` removes only volumes Docker made for this container; carried-over
                // anonymous volumes were passed by name, so they are removed here.
                let result = engine.remove_container_and_volumes(id).await;
                if result.is_ok() {
                    let old = observed.containers.iter().find(|c| &c.id == id);
                    for m in old.map(|c| c.mounts.as_slice()).unwrap_or_default() {
                        if m.is_anonymous() {
                            if let Err(e) = engine.remove_volume(&m.volume).await {
                                let volume = Subject::new(SubjectKind::Volume, &m.volume);
                                report.fail(Some(volume), e.to_string());
                            }
                        }
                    }
                }
                result
            }
            Step::RemoveContainer { id, .. } => replace::remove(engine, id).await,
            Step::RemoveNetwork { network } => engine.remove_network(network).await,
            Step::RemoveVolume { volume } => engine.remove_volume(volume).await,
            _ => continue,
        };
        report.step(step, result.map_err(|e| e.to_string()));
    }
    report
}

/// Ids of the desired services' current containers by replica number (for dependents of
/// converged services).
fn current_ids(
    observed: &Observed,
    desired: &DesiredState,
) -> HashMap<String, BTreeMap<u32, String>> {
    let host = desired.host();
    let mut out: HashMap<String, BTreeMap<u32, String>> = HashMap::new();
    for c in observed.containers.iter().filter(|c| c.owned_by(host)) {
        if let Some(key) = c.service_key() {
            let n = crate::labels::container_number(&c.labels);
            out.entry(key).or_default().insert(n, c.id.clone());
        }
    }
    out
}
