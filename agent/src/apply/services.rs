//! The containers of a pass, every service at once. A new container is created as soon as the
//! pass reaches the containers — creating runs nothing, so it need not wait for its
//! dependencies — and started the moment its *own* dependencies (`DesiredState::dependencies`:
//! `depends_on` and the stack order) hold their conditions, not when a
//! whole level of the graph is done. A recreate, an adoption or a start of an existing
//! container runs when its dependencies are ready (the old container goes then, not earlier, so
//! its downtime is no longer than before). Creates and starts are bounded by `ENGINE_CALLS`.
//!
//! A service whose dependency failed is not started (`not started, dependency … failed`); an
//! unchanged service is left alone and counts as ready for its dependents.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::join_all;
use tokio::sync::{watch, Semaphore};

use super::context::{create_context, inherited};
use super::replace::{self, replace, Removal};
use super::{wait, ApplyContext};
use crate::desired::compose::Condition;
use crate::desired::spec::{DesiredState, ServiceSpec};
use crate::engine::{CreateContext, Engine, EngineError};
use crate::plan::{Observed, ObservedMount, Step};

/// Creates and starts in flight at once. The engine does the work on the same cores; past a
/// handful in flight it only interleaves them (measured in BENCHMARKS.md).
const ENGINE_CALLS: usize = 8;

/// Everything the services of one pass share.
pub(super) struct Pass<'a, E> {
    pub engine: &'a E,
    pub desired: &'a DesiredState,
    pub observed: &'a Observed,
    pub ctx: &'a ApplyContext,
    pub host: &'a str,
    /// The plan's container steps of each service (one per replica that changes), by
    /// `stack/service`.
    pub steps: HashMap<String, Vec<&'a Step>>,
    pub failed_images: &'a BTreeSet<String>,
    /// Services a `Blocked` step names (already reported).
    pub blocked: &'a BTreeSet<String>,
    /// The current containers of each desired service that has any, by replica number.
    pub existing: HashMap<String, BTreeMap<u32, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Its containers exist and were started (or already ran): ids by replica number, so
    /// dependents wait on every replica, as compose does.
    Ready(BTreeMap<u32, String>),
    Failed,
    /// Scaled to zero: nothing to wait on, nothing failed.
    Absent,
}

/// A service's lines for the report: each step done, or a failure.
pub(super) type Lines<'a> = Vec<Result<&'a Step, String>>;

type Published = watch::Receiver<Option<Outcome>>;

/// Run every service's step; lines come back by service key, in dependency order.
pub(super) async fn run<'a, E: Engine>(p: &Pass<'a, E>) -> Vec<(String, Lines<'a>)> {
    let order = crate::plan::ordered(p.desired);
    // A dependency is awaited only if it comes earlier in the order: a cycle (refused by
    // validation) can then never make two services wait on each other forever.
    let position: HashMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key(), i))
        .collect();
    let (senders, receivers): (Vec<_>, HashMap<String, Published>) = {
        let mut senders = Vec::new();
        let mut receivers = HashMap::new();
        for s in &order {
            let (tx, rx) = watch::channel(None);
            senders.push(tx);
            receivers.insert(s.key(), rx);
        }
        (senders, receivers)
    };
    let doomed = doomed(p, &order);
    let gate = Semaphore::new(ENGINE_CALLS);
    let runs = order
        .iter()
        .zip(senders)
        .enumerate()
        .map(|(i, (spec, tx))| {
            let deps: Vec<(String, Condition, Published)> = p
                .desired
                .dependencies(spec)
                .into_iter()
                .filter_map(|(k, c)| {
                    let earlier = position.get(&k).is_some_and(|&j| j < i);
                    let rx = receivers.get(&k).filter(|_| earlier)?;
                    Some((k, c, rx.clone()))
                })
                .collect();
            let (gate, doomed) = (&gate, doomed.contains(&spec.key()));
            async move {
                let (outcome, line) = service(p, spec, deps, doomed, gate).await;
                tx.send_replace(Some(outcome));
                (spec.key(), line)
            }
        });
    join_all(runs).await
}

/// Services that cannot start whatever happens (blocked, image missing, or depending on such a
/// service): their new container is not created ahead.
fn doomed<E>(p: &Pass<'_, E>, order: &[&ServiceSpec]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in order {
        let key = s.key();
        let has_step = p.steps.get(&key).is_some_and(|s| !s.is_empty());
        if p.blocked.contains(&key)
            || (has_step && p.failed_images.contains(&s.image))
            || p.desired
                .dependencies(s)
                .iter()
                .any(|(d, _)| out.contains(d))
        {
            out.insert(key);
        }
    }
    out
}

async fn service<'a, E: Engine>(
    p: &Pass<'a, E>,
    spec: &ServiceSpec,
    deps: Vec<(String, Condition, Published)>,
    doomed: bool,
    gate: &Semaphore,
) -> (Outcome, Lines<'a>) {
    let key = spec.key();
    if p.blocked.contains(&key) {
        return (Outcome::Failed, Vec::new());
    }
    let steps = p.steps.get(&key).cloned().unwrap_or_default();
    // The replicas that stay (higher numbers are being scaled down).
    let mut existing = p.existing.get(&key).cloned().unwrap_or_default();
    existing.retain(|n, _| *n <= spec.replicas);
    if steps.is_empty() {
        let outcome = if !existing.is_empty() {
            Outcome::Ready(existing)
        } else if spec.replicas == 0 {
            Outcome::Absent
        } else {
            Outcome::Failed
        };
        return (outcome, Vec::new());
    }
    let t = std::time::Instant::now();
    if p.failed_images.contains(&spec.image) {
        let line = format!("{key}: not started, image {} is not available", spec.image);
        return (Outcome::Failed, vec![Err(line)]);
    }
    // Each step acts on one replica (its own container name and number).
    let replicas: Vec<(&Step, Cow<'_, ServiceSpec>)> = steps
        .iter()
        .map(|step| {
            let replica = step.container().and_then(|c| spec.replica_named(c));
            (*step, replica.unwrap_or(Cow::Borrowed(spec)))
        })
        .collect();
    let ahead = |step: &Step, replica: &ServiceSpec| {
        matches!(step, Step::CreateContainer { .. }) && !doomed && !joins_another(replica)
    };
    let create_ahead = join_all(replicas.iter().map(|(step, replica)| async move {
        match ahead(step, replica) {
            true => Some(create(p, replica, None, gate).await),
            false => None,
        }
    }));
    let (created, ready) = tokio::join!(create_ahead, dependencies(p, &key, deps));
    if let Err(line) = ready {
        for id in created.into_iter().flatten().flatten() {
            // Never leave a created, never-started container: it would look converged.
            let _ = p.engine.remove_container(&id).await;
        }
        return (Outcome::Failed, vec![Err(line)]);
    }
    let runs = replicas
        .iter()
        .zip(created)
        .map(|((step, replica), created)| async move {
            let id = match created {
                Some(Ok(id)) => start(p.engine, replica, id, gate).await,
                Some(Err(e)) => Err(e),
                None => run_step(p, replica, step, gate).await,
            }?;
            // Every step that gets here started the container (created, recreated, started,
            // restarted, adopted): its post_start hooks run, as compose runs them on a start.
            hooks(
                p.engine,
                replica,
                &id,
                "post_start",
                &replica.runtime.post_start,
            )
            .await?;
            Ok::<_, EngineError>(id)
        });
    let (mut ids, mut failed, mut lines) = (existing, false, Vec::new());
    for ((step, replica), result) in replicas.iter().zip(join_all(runs).await) {
        match result {
            Ok(id) => {
                ids.insert(replica.number, id);
                lines.push(Ok(*step));
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
    tracing::debug!(service = %key, ms = t.elapsed().as_millis() as u64, ?outcome, "service done");
    (outcome, lines)
}

/// The engine resolves `volumes_from` (and, on some versions, other `container:` references)
/// when the container is created: such a service is created only once what it joins exists.
fn joins_another(spec: &ServiceSpec) -> bool {
    let r = &spec.runtime;
    !r.volumes_from.is_empty()
        || !r.links.is_empty()
        || [&r.network_mode, &r.pid, &r.ipc]
            .iter()
            .any(|m| m.as_deref().is_some_and(|m| m.starts_with("container:")))
}

/// Wait for every dependency's outcome, then for its condition.
async fn dependencies<E: Engine>(
    p: &Pass<'_, E>,
    key: &str,
    deps: Vec<(String, Condition, Published)>,
) -> Result<(), String> {
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    for (dep, cond, mut rx) in deps {
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|o| o.clone());
        match outcome {
            Some(Outcome::Ready(ids)) => {
                ready.extend(ids.into_values().map(|id| (dep.clone(), cond, id)))
            }
            Some(Outcome::Absent) => {}
            _ => failed.push(dep),
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "{key}: not started, dependency {} failed",
            failed.join(", ")
        ));
    }
    let waits = ready.iter().map(|(dep, cond, id)| async move {
        wait::condition(p.engine, id, *cond, p.ctx.health_timeout)
            .await
            .map_err(|e| format!("{key}: dependency {dep} {e}"))
    });
    join_all(waits).await.into_iter().collect()
}

/// The old container's volume mounts, for a step that replaces it.
fn old_mounts<'a>(p: &Pass<'a, impl Sized>, step: &Step) -> &'a [ObservedMount] {
    let old_id = match step {
        Step::RecreateContainer { id, .. } => Some(id),
        Step::AdoptContainer { ids, .. } => ids.first(),
        _ => None,
    };
    old_id
        .and_then(|id| p.observed.containers.iter().find(|c| &c.id == id))
        .map(|c| c.mounts.as_slice())
        .unwrap_or_default()
}

async fn create<E: Engine>(
    p: &Pass<'_, E>,
    spec: &ServiceSpec,
    cctx: Option<CreateContext>,
    gate: &Semaphore,
) -> Result<String, EngineError> {
    let cctx = match cctx {
        Some(c) => c,
        None => create_context(spec, p.host, p.ctx)?,
    };
    replace::create(p.engine, spec, &cctx, gate).await
}

/// Start a container this pass created; one that cannot start is removed, so the next pass
/// retries cleanly instead of finding it converged (and its port claim held).
async fn start<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    id: String,
    gate: &Semaphore,
) -> Result<String, EngineError> {
    let started = {
        let _permit = gate.acquire().await;
        engine.start_container(&id, &spec.container_name).await
    };
    match started {
        Ok(()) => Ok(id),
        Err(e) => {
            let _ = engine.remove_container(&id).await;
            Err(e)
        }
    }
}

async fn run_step<E: Engine>(
    p: &Pass<'_, E>,
    spec: &ServiceSpec,
    step: &Step,
    gate: &Semaphore,
) -> Result<String, EngineError> {
    match step {
        Step::StartContainer { id, .. } => {
            let started = {
                let _permit = gate.acquire().await;
                p.engine.start_container(id, &spec.container_name).await
            };
            tracing::debug!(container = %spec.container_name, ok = started.is_ok(), "start of the existing container");
            match started {
                Ok(()) => Ok(id.clone()),
                // Removed by hand as this pass looked (`docker rm -f`, seen between its kill
                // and destroy, or gone since): replaced now, as a removed container is, not a
                // pass later.
                Err(EngineError::BeingRemoved { .. } | EngineError::NoSuchContainer { .. }) => {
                    let cctx = create_context(spec, p.host, p.ctx)?;
                    replace(p.engine, spec, cctx, id, Removal::Underway, gate).await
                }
                Err(e) => Err(e),
            }
        }
        Step::RestartContainer { id, .. } => {
            let _permit = gate.acquire().await;
            p.engine.restart_container(id).await?;
            Ok(id.clone())
        }
        Step::RecreateContainer { id, .. } => {
            // As compose stops a container it recreates: the service's pre_stop hooks first.
            hooks(p.engine, spec, id, "pre_stop", &spec.runtime.pre_stop).await?;
            let mut cctx = create_context(spec, p.host, p.ctx)?;
            cctx.inherited = inherited(spec, old_mounts(p, step));
            replace(p.engine, spec, cctx, id, Removal::Ours, gate).await
        }
        // Named volumes carry over by name (same `<project>_<key>` as compose); anonymous
        // ones by target, as on any recreate. Compose's containers go first: several may
        // claim the ports and addresses the new one needs.
        Step::AdoptContainer { ids, .. } => adopt(p, spec, step, ids, gate).await,
        _ => {
            let id = create(p, spec, None, gate).await?;
            start(p.engine, spec, id, gate).await
        }
    }
}

/// Remove the containers docker compose ran for the service, then create and start the
/// agent's with their anonymous volumes.
async fn adopt<E: Engine>(
    p: &Pass<'_, E>,
    spec: &ServiceSpec,
    step: &Step,
    old: &[String],
    gate: &Semaphore,
) -> Result<String, EngineError> {
    let mut cctx = create_context(spec, p.host, p.ctx)?;
    cctx.inherited = inherited(spec, old_mounts(p, step));
    for id in old {
        p.engine.remove_container(id).await?;
    }
    let id = create(p, spec, Some(cctx), gate).await?;
    start(p.engine, spec, id, gate).await
}

/// Run `spec`'s `which` hooks (post_start or pre_stop) in container `id`, in order; the first
/// failing one fails the service's item, naming it (`post_start[1] exited with status 2`).
async fn hooks<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    id: &str,
    which: &str,
    list: &[crate::desired::spec::HookSpec],
) -> Result<(), EngineError> {
    for (i, h) in list.iter().enumerate() {
        let hook = format!("{which}[{i}]");
        engine.run_hook(id, &spec.container_name, &hook, h).await?;
    }
    Ok(())
}
