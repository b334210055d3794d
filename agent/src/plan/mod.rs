//! `plan`: the pure heart. `(&DesiredState, &Observed, &PlanOptions) -> Plan`, no I/O.
//!
//! Steps come out in the order apply runs them: networks and volumes, images, containers
//! (dependencies first), then removals. A converged host gives an empty plan.

mod observed;
mod render;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use observed::*;

use crate::desired::spec::{DesiredState, PullPolicy, ServiceSpec};
use crate::labels;

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Remove managed containers (and networks) that are no longer desired.
    pub prune: bool,
    /// Also remove managed volumes no longer desired. Never implied.
    pub prune_volumes: bool,
    /// Allow a desired state with no services to prune everything.
    pub allow_empty: bool,
    /// Services whose liveness the pass leaves alone (`stack/service`): those whose rollout is
    /// being watched (a stopped or unhealthy container of theirs is the watch's to judge; a
    /// restart would hide a crash from the verdict), and crash-looping ones whose paced drift
    /// repair is not due yet (`daemon/pacing.rs`). One that is gone is still created.
    pub watched: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    CreateNetwork {
        network: String,
    },
    CreateVolume {
        volume: String,
    },
    /// A stack's data directory for a read-write bind (`crate::data`), seeded from the repo.
    CreateData {
        data: String,
        dir: std::path::PathBuf,
        seeded: bool,
    },
    PullImage {
        image: String,
    },
    BuildImage {
        service: String,
        image: String,
    },
    CreateContainer {
        service: String,
        container: String,
    },
    RecreateContainer {
        service: String,
        container: String,
        id: String,
        reasons: Vec<String>,
    },
    /// A container docker compose runs for this service (found by its labels): replaced by the
    /// agent's, keeping its volumes; `ids` are every compose container of the service.
    AdoptContainer {
        service: String,
        container: String,
        from: String,
        ids: Vec<String>,
    },
    StartContainer {
        service: String,
        container: String,
        id: String,
    },
    RestartContainer {
        service: String,
        container: String,
        id: String,
        reason: String,
    },
    RemoveContainer {
        service: String,
        container: String,
        id: String,
        /// No longer desired, or scaled down.
        reason: String,
    },
    RemoveNetwork {
        network: String,
    },
    RemoveVolume {
        volume: String,
    },
    /// Something the agent will not do on its own; the reason says what to do instead.
    Blocked {
        subject: String,
        reason: String,
    },
}

impl Step {
    /// The `stack/service` a container step acts on.
    pub fn service(&self) -> Option<&str> {
        match self {
            Step::CreateContainer { service, .. }
            | Step::RecreateContainer { service, .. }
            | Step::AdoptContainer { service, .. }
            | Step::StartContainer { service, .. }
            | Step::RestartContainer { service, .. }
            | Step::BuildImage { service, .. } => Some(service),
            _ => None,
        }
    }

    /// The container a container step acts on (a replica's name for scaled services).
    pub fn container(&self) -> Option<&str> {
        match self {
            Step::CreateContainer { container, .. }
            | Step::RecreateContainer { container, .. }
            | Step::AdoptContainer { container, .. }
            | Step::StartContainer { container, .. }
            | Step::RestartContainer { container, .. }
            | Step::RemoveContainer { container, .. } => Some(container),
            _ => None,
        }
    }

    /// Whether the step leaves a container of its service starting or running anew (what
    /// `depends_on` waits for and a rollout watches).
    pub fn starts_container(&self) -> bool {
        matches!(
            self,
            Step::CreateContainer { .. }
                | Step::RecreateContainer { .. }
                | Step::AdoptContainer { .. }
                | Step::StartContainer { .. }
                | Step::RestartContainer { .. }
        )
    }

    pub fn is_change(&self) -> bool {
        !matches!(self, Step::Blocked { .. })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.is_change()).count()
    }
}

pub fn plan(desired: &DesiredState, observed: &Observed, opts: &PlanOptions) -> Plan {
    let host = desired.host();
    let mut steps = Vec::new();

    for (name, spec) in &desired.networks {
        match observed.networks.get(name) {
            None => steps.push(Step::CreateNetwork { network: name.clone() }),
            Some(n) if spec.subnet.is_some() && n.subnet != spec.subnet => steps.push(Step::Blocked {
                subject: format!("network {name}"),
                reason: format!(
                    "exists with subnet {}, desired {}; Docker cannot change a subnet in place: remove the network by hand",
                    n.subnet.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
                    spec.subnet.map(|s| s.to_string()).unwrap_or_default()
                ),
            }),
            Some(_) => {}
        }
    }
    for name in &desired.external_networks {
        if !observed.networks.contains_key(name) && !desired.networks.contains_key(name) {
            steps.push(Step::Blocked {
                subject: format!("network {name}"),
                reason: "declared external but does not exist: create it or run the stack that defines it".into(),
            });
        }
    }
    for name in desired.volumes.keys() {
        if !observed.volumes.contains_key(name) {
            steps.push(Step::CreateVolume {
                volume: name.clone(),
            });
        }
    }

    for d in observed.data.iter().filter(|d| !d.exists) {
        steps.push(Step::CreateData {
            data: format!("{}/{}", d.stack, d.path),
            dir: d.dir.clone(),
            seeded: d.seed.is_some(),
        });
    }

    let by_name: BTreeMap<&str, &ObservedContainer> = observed
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    // The agent's containers by service and replica number.
    let mut by_service: BTreeMap<String, BTreeMap<u32, &ObservedContainer>> = BTreeMap::new();
    for c in observed.containers.iter().filter(|c| c.owned_by(host)) {
        if let Some(key) = c.service_key() {
            by_service
                .entry(key)
                .or_default()
                .insert(labels::container_number(&c.labels), c);
        }
    }

    let mut image_steps = Vec::new();
    let mut container_steps = Vec::new();
    let mut scaled_down = Vec::new();
    let mut images_seen = BTreeSet::new();
    let no_containers = BTreeMap::new();
    for spec in ordered(desired) {
        let key = spec.key();
        let ours = by_service.get(&key).unwrap_or(&no_containers);
        // Compose's containers are adopted only by a service the agent does not run yet.
        let mut adopt = if ours.is_empty() {
            compose_containers(observed, spec)
        } else {
            BTreeMap::new()
        };
        let mut needs_create = false;
        for n in 1..=spec.replicas {
            let replica = spec.replica(n);
            let current = ours.get(&n).copied();
            let adopt = adopt.remove(&n).unwrap_or_default();
            needs_create |= container_step(
                &replica,
                current,
                &adopt,
                &by_name,
                host,
                &mut container_steps,
            );
        }
        // Scaled down: the highest numbers go, as `docker compose up --scale` removes them.
        for (n, c) in ours.iter().rev() {
            if *n > spec.replicas {
                scaled_down.push(Step::RemoveContainer {
                    service: key.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                    reason: format!("scaled down to {}", spec.replicas),
                });
            }
        }
        if let Some(b) = &spec.build {
            let built = observed
                .images
                .get(&spec.image)
                .and_then(|i| i.context_digest.as_deref());
            if built != Some(b.context_digest.as_str()) && images_seen.insert(spec.image.clone()) {
                image_steps.push(Step::BuildImage {
                    service: key.clone(),
                    image: spec.image.clone(),
                });
            }
        } else if needs_create {
            let present = observed.images.contains_key(&spec.image);
            match spec.pull_policy {
                PullPolicy::Never if !present => image_steps.push(Step::Blocked {
                    subject: format!("image {}", spec.image),
                    reason: format!("pull_policy: never, and the image is not on the host (needed by {key}); load or build it there"),
                }),
                PullPolicy::Never => {}
                // `always`: pulled whenever the container is (re)created, as `up` pulls it.
                PullPolicy::Always | PullPolicy::Missing | PullPolicy::Build
                    if (!present || spec.pull_policy == PullPolicy::Always)
                        && images_seen.insert(spec.image.clone()) =>
                {
                    image_steps.push(Step::PullImage {
                        image: spec.image.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    steps.extend(image_steps);
    steps.extend(container_steps);
    steps.extend(scaled_down);

    let desired_keys: BTreeSet<String> = desired.services.iter().map(ServiceSpec::key).collect();
    let mut orphans: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| c.owned_by(host))
        .filter(|c| c.service_key().is_none_or(|k| !desired_keys.contains(&k)))
        .collect();
    // Later stacks go first, as `docker compose down` stops dependents first.
    orphans.sort_by_key(|c| {
        let stack = c
            .service_key()
            .and_then(|k| Some(k.split_once('/')?.0.to_string()));
        std::cmp::Reverse(stack.map_or(0, |s| desired.stack_rank(&s)))
    });
    if opts.prune && !orphans.is_empty() {
        if desired.services.is_empty() && !opts.allow_empty {
            steps.push(Step::Blocked {
                subject: "prune".into(),
                reason: format!(
                    "the desired state has no services: refusing to remove all {} managed containers (pass --allow-empty if that is intended)",
                    orphans.len()
                ),
            });
        } else {
            for c in orphans {
                steps.push(Step::RemoveContainer {
                    service: c.service_key().unwrap_or_default(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                    reason: "no longer desired".into(),
                });
            }
            for (name, n) in &observed.networks {
                if labels::owned_by(&n.labels, host) && !desired.networks.contains_key(name) {
                    steps.push(Step::RemoveNetwork {
                        network: name.clone(),
                    });
                }
            }
        }
    }
    if opts.prune_volumes && (opts.allow_empty || !desired.services.is_empty()) {
        for (name, v) in &observed.volumes {
            if labels::owned_by(&v.labels, host) && !desired.volumes.contains_key(name) {
                steps.push(Step::RemoveVolume {
                    volume: name.clone(),
                });
            }
        }
    }
    steps.retain(|s| {
        let liveness = matches!(
            s,
            Step::StartContainer { .. } | Step::RestartContainer { .. }
        );
        !(liveness && s.service().is_some_and(|k| opts.watched.contains(k)))
    });
    Plan { steps }
}

/// Containers docker compose (v1 `proj_svc_1` or v2 `proj-svc-1`) runs for `spec`'s service:
/// compose's project and service labels, not a one-off, not managed by any agent. Grouped by the
/// replica that adopts them: their `container-number`, and replica 1 for numbers beyond the
/// service's replicas (scaled down as they are adopted).
fn compose_containers<'a>(
    observed: &'a Observed,
    spec: &ServiceSpec,
) -> BTreeMap<u32, Vec<&'a ObservedContainer>> {
    let mut found: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| !c.labels.contains_key(labels::MANAGED))
        .filter(|c| c.labels.get(labels::COMPOSE_PROJECT) == Some(&spec.project))
        .filter(|c| c.labels.get(labels::COMPOSE_SERVICE) == Some(&spec.service))
        .filter(|c| c.labels.get(labels::COMPOSE_ONEOFF).map(String::as_str) != Some("True"))
        .collect();
    // The running one first: its name is shown, its volumes are carried over.
    found.sort_by_key(|c| (c.state != "running", c.name.clone()));
    let mut by_replica: BTreeMap<u32, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in found {
        let n = labels::container_number(&c.labels);
        let n = if (1..=spec.replicas).contains(&n) {
            n
        } else {
            1
        };
        by_replica.entry(n).or_default().push(c);
    }
    by_replica
}

/// The step for one replica (`spec` is that replica's): create, adopt, recreate, repair or
/// nothing; a name another owner holds is `Blocked`. True when a container will be created.
fn container_step(
    spec: &ServiceSpec,
    current: Option<&ObservedContainer>,
    adopt: &[&ObservedContainer],
    by_name: &BTreeMap<&str, &ObservedContainer>,
    host: &str,
    steps: &mut Vec<Step>,
) -> bool {
    let key = spec.key();
    // A container with our name that we do not own is never touched (unless adopted).
    if let Some(other) = by_name.get(spec.container_name.as_str()) {
        let adopted = adopt.iter().any(|c| c.id == other.id);
        if !adopted && (!other.owned_by(host) || current.is_some_and(|c| c.id != other.id)) {
            steps.push(Step::Blocked {
                subject: format!("container {}", spec.container_name),
                reason: format!("the name is taken by a container this agent does not own for {key} ({}); rename or remove it", owner(other)),
            });
            return false;
        }
    }
    match current {
        None if !adopt.is_empty() => {
            steps.push(Step::AdoptContainer {
                service: key,
                container: spec.container_name.clone(),
                from: adopt[0].name.clone(),
                ids: adopt.iter().map(|c| c.id.clone()).collect(),
            });
            true
        }
        None => {
            steps.push(Step::CreateContainer {
                service: key,
                container: spec.container_name.clone(),
            });
            true
        }
        Some(c) => {
            let reasons = recreate_reasons(spec, c);
            if !reasons.is_empty() {
                steps.push(Step::RecreateContainer {
                    service: key,
                    container: spec.container_name.clone(),
                    id: c.id.clone(),
                    reasons,
                });
                true
            } else {
                steps.extend(liveness_step(spec, c));
                false
            }
        }
    }
}

fn owner(c: &ObservedContainer) -> String {
    match (c.labels.get(labels::MANAGED), c.labels.get(labels::HOST)) {
        (Some(_), Some(h)) => format!("managed for host {h}"),
        _ => "not managed by macula-gitops".into(),
    }
}

/// Fields whose digest differs from what the container was created with.
fn recreate_reasons(spec: &ServiceSpec, c: &ObservedContainer) -> Vec<String> {
    if c.labels.get(labels::SPEC_HASH).map(String::as_str) == Some(spec.hash().as_str()) {
        if c.name != spec.container_name {
            return vec!["container_name changed".into()];
        }
        // Created before the agent wrote compose's labels: once, so compose tools see it.
        if !c.labels.contains_key(labels::COMPOSE_PROJECT) {
            return vec!["docker compose labels added".into()];
        }
        return Vec::new();
    }
    let old: BTreeMap<String, String> = c
        .labels
        .get(labels::FIELDS)
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    if old.is_empty() {
        return vec!["spec changed".into()];
    }
    let new = spec.field_hashes();
    let mut reasons: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for (k, v) in &new {
        if old.get(k) != Some(v) {
            match k.strip_prefix("file:") {
                Some(f) => files.push(f.to_string()),
                None if k == "mounts" || k == "env_files" => {}
                None => reasons.push(format!("{k} changed")),
            }
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            match k.strip_prefix("file:") {
                Some(f) => files.push(f.to_string()),
                None => reasons.push(format!("{k} changed")),
            }
        }
    }
    for f in files {
        reasons.push(format!("file {f} changed"));
    }
    // Mount layout changed without a file's content changing.
    if reasons.is_empty() && old.get("mounts") != new.get("mounts") {
        reasons.push("mounts changed".into());
    }
    if reasons.is_empty() {
        reasons.push("spec changed".into());
    }
    reasons
}

/// A converged container that is not doing what it should: stopped, or unhealthy.
fn liveness_step(spec: &ServiceSpec, c: &ObservedContainer) -> Option<Step> {
    let key = spec.key();
    match c.state.as_str() {
        "running" if c.health.as_deref() == Some("unhealthy") => Some(Step::RestartContainer {
            service: key,
            container: c.name.clone(),
            id: c.id.clone(),
            reason: "unhealthy".into(),
        }),
        "running" | "restarting" => None,
        // A one-shot job that finished well stays finished.
        "exited"
            if c.exit_code == Some(0)
                && (spec.restart == "no" || spec.restart.starts_with("on-failure")) =>
        {
            None
        }
        _ => Some(Step::StartContainer {
            service: key,
            container: c.name.clone(),
            id: c.id.clone(),
        }),
    }
}

/// Services in dependency order (dependencies first), stable by file order otherwise.
pub fn ordered(desired: &DesiredState) -> Vec<&ServiceSpec> {
    let mut out: Vec<&ServiceSpec> = Vec::new();
    let mut placed = BTreeSet::new();
    let mut remaining: Vec<&ServiceSpec> = desired.services.iter().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|s| {
            let ready = desired
                .dependencies(s)
                .iter()
                .all(|(d, _)| placed.contains(d) || desired.service(d).is_none());
            if ready {
                placed.insert(s.key());
                out.push(s);
            }
            !ready
        });
        // A cycle (rejected by validation) must not hang the planner.
        if remaining.len() == before {
            out.append(&mut remaining);
        }
    }
    out
}
