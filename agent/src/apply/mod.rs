//! Executing a plan against an `Engine`: networks and volumes, images, then containers in
//! `depends_on` order, stacks in their `hosts.yaml` order (`DesiredState::dependencies`;
//! independent services in parallel, dependencies waited on by their
//! condition), then removals. A failed item does not stop the others: the outcome is a
//! `{failed, tried}` report listing each failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;

use crate::desired::compose::Condition;
use crate::desired::spec::{DesiredState, MountSource, ServiceSpec};
use crate::engine::{CreateContext, Engine, EngineError};
use crate::outcome::{Change, ItemError, Subject, SubjectKind};
use crate::plan::{Observed, ObservedMount, Plan, Step};
use crate::{data, state};

#[derive(Debug, Clone)]
pub struct ApplyContext {
    pub revision: Option<String>,
    pub state_dir: PathBuf,
    /// Where read-write relative binds live (`crate::data`).
    pub data_root: PathBuf,
    /// `--prune-volumes`: a pruned container's anonymous volumes go with it.
    pub prune_volumes: bool,
    /// Upper bound on waiting for a dependency to become healthy or complete.
    pub health_timeout: Duration,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The service's containers exist and were started (or already were): ids by replica
    /// number, so dependents wait on every replica, as compose does.
    Ready(BTreeMap<u32, String>),
    Failed,
    /// Scaled to zero: nothing to wait on, nothing failed.
    Absent,
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

    for step in &plan.steps {
        match step {
            Step::CreateNetwork { network } => match desired.networks.get(network) {
                Some(spec) => match engine.create_network(spec, &host).await {
                    Ok(()) => report.ok(step),
                    Err(e) => report.fail(Subject::of_step(step), e.to_string()),
                },
                None => report.fail(
                    Subject::of_step(step),
                    format!("network {network}: not in the desired state"),
                ),
            },
            Step::CreateVolume { volume } => match desired.volumes.get(volume) {
                Some(spec) => match engine.create_volume(spec, &host).await {
                    Ok(()) => report.ok(step),
                    Err(e) => report.fail(Subject::of_step(step), e.to_string()),
                },
                None => report.fail(
                    Subject::of_step(step),
                    format!("volume {volume}: not in the desired state"),
                ),
            },
            Step::CreateData { data, .. } => {
                let found = observed
                    .data
                    .iter()
                    .find(|d| format!("{}/{}", d.stack, d.path) == *data);
                match found
                    .map(|d| data::ensure(&ctx.data_root, &d.stack, &d.path, d.seed.as_deref()))
                {
                    Some(Ok(_)) => report.ok(step),
                    Some(Err(e)) => report.fail(Subject::of_step(step), e.to_string()),
                    None => report.fail(
                        Subject::of_step(step),
                        format!("data {data}: not in the desired state"),
                    ),
                }
            }
            _ => {}
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

    // By service; a scaled service has one step per replica that changes, run in order.
    let mut container_steps: HashMap<String, Vec<&Step>> = HashMap::new();
    for s in plan.steps.iter().filter(|s| {
        matches!(
            s,
            Step::CreateContainer { .. }
                | Step::RecreateContainer { .. }
                | Step::AdoptContainer { .. }
                | Step::StartContainer { .. }
                | Step::RestartContainer { .. }
        )
    }) {
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
            if let Err(e) = create_context(spec, &host, ctx) {
                report.fail(Some(Subject::service(&spec.key())), e.to_string());
            }
        }
    }

    // Containers that are already fine, by service, so dependents can wait on them.
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let observed_ids = current_ids(observed, desired);
    for level in levels(desired) {
        let runs = level.iter().map(|spec| {
            let key = spec.key();
            let steps = container_steps.get(&key).cloned().unwrap_or_default();
            let deps = desired.dependencies(spec);
            let deps_failed: Vec<String> = deps
                .iter()
                .map(|(d, _)| d.clone())
                .filter(|d| {
                    matches!(outcomes.get(d), Some(Outcome::Failed)) || blocked_services.contains(d)
                })
                .collect();
            let dep_ids: Vec<(String, Condition, Vec<String>)> = deps
                .into_iter()
                .map(|(k, c)| {
                    let ids = match outcomes.get(&k) {
                        Some(Outcome::Ready(ids)) => ids.values().cloned().collect(),
                        _ => Vec::new(),
                    };
                    (k, c, ids)
                })
                .collect();
            let image_failed = failed_images.contains(&spec.image);
            let blocked = blocked_services.contains(&key);
            // The replicas that stay (higher numbers are being scaled down).
            let mut existing = observed_ids.get(&key).cloned().unwrap_or_default();
            existing.retain(|n, _| *n <= spec.replicas);
            let host = host.clone();
            async move {
                if blocked {
                    return (key, Outcome::Failed, Vec::new());
                }
                if !deps_failed.is_empty() {
                    let line = format!(
                        "{key}: not started, dependency {} failed",
                        deps_failed.join(", ")
                    );
                    return (key, Outcome::Failed, vec![Err(line)]);
                }
                if image_failed && !steps.is_empty() {
                    let line = format!("{key}: not started, image {} is not available", spec.image);
                    return (key, Outcome::Failed, vec![Err(line)]);
                }
                // Only a container about to start waits: a converged one keeps running.
                for (dep, cond, ids) in dep_ids.iter().filter(|_| !steps.is_empty()) {
                    for id in ids {
                        if let Err(e) = wait_for(engine, id, *cond, ctx.health_timeout).await {
                            let line = format!("{key}: dependency {dep} {e}");
                            return (key, Outcome::Failed, vec![Err(line)]);
                        }
                    }
                }
                if steps.is_empty() {
                    let outcome = if !existing.is_empty() {
                        Outcome::Ready(existing)
                    } else if spec.replicas == 0 {
                        Outcome::Absent
                    } else {
                        Outcome::Failed
                    };
                    return (key, outcome, Vec::new());
                }
                let mut lines = Vec::new();
                let mut failed = false;
                let mut ids = existing;
                for step in steps {
                    let replica = step
                        .container()
                        .and_then(|c| spec.replica_named(c))
                        .unwrap_or(std::borrow::Cow::Borrowed(spec));
                    match run_container_step(engine, &replica, step, &host, ctx, observed).await {
                        Ok(id) => {
                            ids.insert(replica.number, id);
                            lines.push(Ok(step));
                        }
                        Err(e) => {
                            failed = true;
                            lines.push(Err(e.to_string()));
                        }
                    }
                }
                let outcome = match (failed, ids.is_empty()) {
                    (true, _) => Outcome::Failed,
                    (false, false) => Outcome::Ready(ids),
                    (false, true) => Outcome::Absent,
                };
                (key, outcome, lines)
            }
        });
        for (key, outcome, lines) in join_all(runs).await {
            for line in lines {
                match line {
                    Ok(step) => report.ok(step),
                    Err(l) => report.fail(Some(Subject::service(&key)), l),
                }
            }
            outcomes.insert(key, outcome);
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
            Step::RemoveContainer { id, .. } => engine.remove_container(id).await,
            Step::RemoveNetwork { network } => engine.remove_network(network).await,
            Step::RemoveVolume { volume } => engine.remove_volume(volume).await,
            _ => continue,
        };
        match result {
            Ok(()) => report.ok(step),
            Err(e) => report.fail(Subject::of_step(step), e.to_string()),
        }
    }
    report
}

/// Ids of the desired services' current containers by replica number (for dependents of
/// converged services).
fn current_ids(
    observed: &Observed,
    desired: &DesiredState,
) -> BTreeMap<String, BTreeMap<u32, String>> {
    let host = desired.host();
    let mut out: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
    for c in observed.containers.iter().filter(|c| c.owned_by(host)) {
        if let Some(key) = c.service_key() {
            let n = crate::labels::container_number(&c.labels);
            out.entry(key).or_default().insert(n, c.id.clone());
        }
    }
    out
}

/// The old container's anonymous volumes the new one takes over, by target: those at a target
/// the spec leaves anonymous (`- /cache`) or does not mount at all (an image `VOLUME`), as
/// compose v2's `mergeMounts`/`getInheritedVolume` (v1: `get_container_data_volumes`) do. A
/// target the spec now gives a named volume or a bind gets that instead.
fn inherited(spec: &ServiceSpec, old: &[ObservedMount]) -> BTreeMap<String, String> {
    old.iter()
        .filter(|m| m.is_anonymous())
        .filter(|m| {
            spec.mounts
                .iter()
                .find(|s| s.target == m.target)
                .is_none_or(|s| s.source == MountSource::Anonymous)
        })
        .map(|m| (m.target.clone(), m.volume.clone()))
        .collect()
}

/// The volumes of the container a recreate or an adoption replaces (the first adopted one).
fn old_mounts<'a>(observed: &'a Observed, step: &Step) -> &'a [ObservedMount] {
    let old_id = match step {
        Step::RecreateContainer { id, .. } => Some(id),
        Step::AdoptContainer { ids, .. } => ids.first(),
        _ => None,
    };
    old_id
        .and_then(|id| observed.containers.iter().find(|c| &c.id == id))
        .map(|c| c.mounts.as_slice())
        .unwrap_or_default()
}

async fn run_container_step<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    step: &Step,
    host: &str,
    ctx: &ApplyContext,
    observed: &Observed,
) -> Result<String, EngineError> {
    let old_mounts = old_mounts(observed, step);
    match step {
        Step::StartContainer { id, .. } => {
            engine.start_container(id, &spec.container_name).await?;
            Ok(id.clone())
        }
        Step::RestartContainer { id, .. } => {
            engine.restart_container(id).await?;
            Ok(id.clone())
        }
        Step::RecreateContainer { id, .. } => {
            let mut cctx = create_context(spec, host, ctx)?;
            cctx.inherited = inherited(spec, old_mounts);
            engine.remove_container(id).await?;
            create_and_start(engine, spec, &cctx).await
        }
        // Named volumes carry over by name (same `<project>_<key>` as compose); anonymous
        // ones by target, as on any recreate.
        Step::AdoptContainer { ids, .. } => {
            let mut cctx = create_context(spec, host, ctx)?;
            cctx.inherited = inherited(spec, old_mounts);
            for id in ids {
                engine.remove_container(id).await?;
            }
            create_and_start(engine, spec, &cctx).await
        }
        _ => {
            let cctx = create_context(spec, host, ctx)?;
            create_and_start(engine, spec, &cctx).await
        }
    }
}

async fn create_and_start<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    cctx: &CreateContext,
) -> Result<String, EngineError> {
    let id = engine.create_container(spec, cctx).await?;
    if let Err(e) = engine.start_container(&id, &spec.container_name).await {
        // A created-but-never-started container would look converged on the next pass and
        // keep its port claim; remove it so the next pass retries cleanly.
        let _ = engine.remove_container(&id).await;
        return Err(e);
    }
    Ok(id)
}

fn create_context(
    spec: &ServiceSpec,
    host: &str,
    ctx: &ApplyContext,
) -> Result<CreateContext, EngineError> {
    let mut mount_paths = BTreeMap::new();
    let fail = |message: String| EngineError::Container {
        container: spec.container_name.clone(),
        message,
    };
    for m in &spec.mounts {
        match &m.source {
            MountSource::Repo { digest, local, .. } => {
                let p = state::materialise(&ctx.state_dir, digest, local)
                    .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            MountSource::Data { path, seed } => {
                let (p, _) = data::ensure(&ctx.data_root, &spec.stack, path, seed.as_deref())
                    .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            MountSource::Generated {
                name,
                digest,
                content,
            } => {
                let owner = m
                    .options
                    .file_owner
                    .as_ref()
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                let p = state::materialise_bytes(
                    &ctx.state_dir,
                    digest,
                    name,
                    &content.0,
                    m.options.file_mode.unwrap_or(0o444),
                    owner,
                )
                .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            _ => {}
        }
    }
    Ok(CreateContext {
        host: host.to_string(),
        revision: ctx.revision.clone(),
        mount_paths,
        inherited: BTreeMap::new(),
    })
}

/// Wait until the dependency satisfies `cond`.
async fn wait_for<E: Engine>(
    engine: &E,
    id: &str,
    cond: Condition,
    timeout: Duration,
) -> Result<(), String> {
    if cond == Condition::ServiceStarted {
        return Ok(());
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let st = engine
            .container_status(id)
            .await
            .map_err(|e| e.to_string())?;
        match cond {
            Condition::ServiceHealthy => match st.health.as_deref() {
                Some("healthy") => return Ok(()),
                None => {
                    return Err(
                        "has no healthcheck but is depended on with condition service_healthy"
                            .into(),
                    )
                }
                Some("unhealthy") => return Err("is unhealthy".into()),
                _ if st.state == "exited" || st.state == "dead" => {
                    return Err(format!("exited (code {})", st.exit_code.unwrap_or(-1)))
                }
                _ => {}
            },
            Condition::ServiceCompletedSuccessfully => {
                if st.state == "exited" || st.state == "dead" {
                    return match st.exit_code {
                        Some(0) => Ok(()),
                        code => Err(format!(
                            "did not complete successfully (exit code {})",
                            code.unwrap_or(-1)
                        )),
                    };
                }
            }
            Condition::ServiceStarted => return Ok(()),
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "did not become {} within {}s",
                if cond == Condition::ServiceHealthy {
                    "healthy"
                } else {
                    "complete"
                },
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Services grouped so that every service's dependencies are in an earlier group.
fn levels(desired: &DesiredState) -> Vec<Vec<&ServiceSpec>> {
    let mut level: HashMap<String, usize> = HashMap::new();
    for s in crate::plan::ordered(desired) {
        let l = desired
            .dependencies(s)
            .iter()
            .filter_map(|(d, _)| level.get(d))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(s.key(), l);
    }
    let max = level.values().copied().max().unwrap_or(0);
    let mut out = vec![
        Vec::new();
        if desired.services.is_empty() {
            0
        } else {
            max + 1
        }
    ];
    for s in &desired.services {
        out[level[&s.key()]].push(s);
    }
    out
}
