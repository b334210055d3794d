//! The pure cluster plan: desired clusters against what the engine and the clusters show.
//! No I/O here; `apply` executes the steps in order, `diff` prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::file::{
    ClusterSpec, FluxResolved, FluxSource, PortMapping, PortProtocol, RegistrySpec, Role,
};
use super::oci::Artifact;
use super::secrets::DesiredSecret;

#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub clusters: Vec<DesiredCluster>,
    pub registry: Option<RegistrySpec>,
    /// Delete kind clusters that are no longer desired (destroys their state).
    pub prune: bool,
    /// Host services joined to the nodes' network under an alias.
    pub host_services: Vec<HostService>,
}

/// A host-stack service the clusters reach by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostService {
    /// `stack/service`.
    pub service: String,
    /// Every replica's container: each joins under the alias.
    pub containers: Vec<String>,
    pub alias: String,
}

#[derive(Debug, Clone)]
pub struct DesiredCluster {
    pub name: String,
    pub spec: ClusterSpec,
    pub flux: FluxResolved,
    /// Secrets made from the host's environment.
    pub secrets: Vec<DesiredSecret>,
    /// `flux.source: oci`: the cluster's directory of this revision, packed at validation.
    pub artifact: Option<Artifact>,
}

/// Every kind cluster on the engine, by name.
#[derive(Debug, Clone, Default)]
pub struct ClustersObserved {
    pub clusters: BTreeMap<String, ObservedCluster>,
    /// Per oci-source cluster: the layer digest its moving tag holds in the registry (`None`:
    /// no such tag, or the registry could not be read — then the plan pushes).
    pub artifacts: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct ObservedCluster {
    pub nodes: Vec<ObservedNode>,
    pub registry: RegistryObserved,
    /// `None`: Flux could not be observed (no API access yet); treated as absent.
    pub flux: Option<FluxObserved>,
    /// Aliases of the host services attached to the nodes' network.
    pub host_services: BTreeSet<String>,
    /// `namespace/name` of the desired Secrets whose data matches.
    pub secrets_in_sync: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    pub role: Role,
    pub image: String,
    pub ports: Vec<PortMapping>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryObserved {
    /// The registry container is on the `kind` network under the in-cluster alias.
    pub network: bool,
    /// Every node has the expected `hosts.toml` for both registry names.
    pub hosts_toml: bool,
    /// `kube-public/local-registry-hosting` holds the expected content.
    pub configmap: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FluxObserved {
    /// sha256 of the install.yaml last applied completely (annotation on the namespace).
    pub install_sha256: Option<String>,
    /// Its Flux version (annotation on the namespace).
    pub install_version: Option<String>,
    pub sync: Option<SyncObserved>,
}

/// The fields of the flux-system source (GitRepository or OCIRepository) and Kustomization
/// the agent owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncObserved {
    /// The Kustomization's `sourceRef.kind`: `GitRepository` or `OCIRepository`.
    pub source_kind: String,
    pub url: String,
    /// Git only.
    pub branch: String,
    /// OCI only: the tag followed, and plain-HTTP access to the local registry.
    pub tag: String,
    pub insecure: bool,
    pub interval: String,
    pub secret: Option<String>,
    pub path: String,
    pub sync_interval: String,
    pub prune: bool,
}

impl SyncObserved {
    pub fn desired(f: &FluxResolved) -> Self {
        let common = Self {
            interval: f.interval.clone(),
            path: f.path.clone(),
            sync_interval: f.sync_interval.clone(),
            prune: true,
            ..Default::default()
        };
        match &f.source {
            FluxSource::Git => Self {
                source_kind: "GitRepository".into(),
                url: f.git_url.clone(),
                branch: f.branch.clone(),
                secret: f.secret_ref.as_ref().map(|s| s.name.clone()),
                ..common
            },
            FluxSource::Oci(t) => Self {
                source_kind: "OCIRepository".into(),
                url: t.url.clone(),
                tag: t.tag.clone(),
                insecure: true,
                ..common
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ClusterStep {
    Create {
        name: String,
        nodes: usize,
        image: String,
    },
    /// Delete and create again; only when the cluster says `recreate: true`.
    Recreate {
        name: String,
        reasons: Vec<String>,
    },
    /// The config changed in a way kind cannot apply in place, and recreating is not allowed.
    NeedsRecreate {
        name: String,
        reasons: Vec<String>,
    },
    WireRegistry {
        name: String,
        parts: Vec<String>,
    },
    /// Join host services to the nodes' network under their aliases.
    AttachHostServices {
        name: String,
        services: Vec<String>,
    },
    /// Create or update Secrets from the host's environment (names only, never values).
    Secrets {
        name: String,
        secrets: Vec<String>,
    },
    InstallFlux {
        name: String,
        version: String,
        /// The version installed now, when this is an upgrade (or a re-install).
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The pinned digest, when the desired state pins one.
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    SyncFlux {
        name: String,
        changes: Vec<String>,
    },
    /// Push the cluster's artifact (`flux.source: oci`): its directory changed since the
    /// artifact the moving tag holds.
    PushArtifact {
        name: String,
        /// `registry/repository:tag` pushed to.
        target: String,
        digest: String,
        /// The layer digest the tag holds now, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        files: usize,
    },
    /// A kind cluster that is not desired: left running.
    Unmanaged {
        name: String,
    },
    Delete {
        name: String,
    },
}

impl ClusterStep {
    pub fn cluster(&self) -> &str {
        match self {
            ClusterStep::Create { name, .. }
            | ClusterStep::Recreate { name, .. }
            | ClusterStep::NeedsRecreate { name, .. }
            | ClusterStep::WireRegistry { name, .. }
            | ClusterStep::AttachHostServices { name, .. }
            | ClusterStep::Secrets { name, .. }
            | ClusterStep::InstallFlux { name, .. }
            | ClusterStep::SyncFlux { name, .. }
            | ClusterStep::PushArtifact { name, .. }
            | ClusterStep::Unmanaged { name }
            | ClusterStep::Delete { name } => name,
        }
    }

    /// Steps that only report and change nothing.
    pub fn is_report(&self) -> bool {
        matches!(
            self,
            ClusterStep::NeedsRecreate { .. } | ClusterStep::Unmanaged { .. }
        )
    }
}

impl fmt::Display for ClusterStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterStep::Create { name, nodes, image } => {
                write!(
                    f,
                    "+ cluster {name} ({nodes} node{}, {image})",
                    if *nodes == 1 { "" } else { "s" }
                )
            }
            ClusterStep::Recreate { name, reasons } => {
                write!(f, "-/+ cluster {name}: recreate ({})", reasons.join("; "))
            }
            ClusterStep::NeedsRecreate { name, reasons } => write!(
                f,
                "~ cluster {name}: needs recreate ({}); left as is, set recreate: true to allow",
                reasons.join("; ")
            ),
            ClusterStep::WireRegistry { name, parts } => {
                write!(f, "~ cluster {name}: wire registry ({})", parts.join(", "))
            }
            ClusterStep::AttachHostServices { name, services } => write!(
                f,
                "~ cluster {name}: reach host services by name ({})",
                services.join(", ")
            ),
            ClusterStep::Secrets { name, secrets } => {
                write!(f, "~ cluster {name}: secrets {}", secrets.join("; "))
            }
            ClusterStep::InstallFlux {
                name,
                version,
                from,
                sha256,
            } => {
                let verified = match sha256 {
                    Some(s) => format!("sha256 pinned {}", &s[..s.len().min(12)]),
                    None => "verified by the release's checksums".into(),
                };
                match from {
                    Some(old) if old != version => write!(
                        f,
                        "~ cluster {name}: upgrade flux {old} → {version} ({verified})"
                    ),
                    Some(_) => write!(
                        f,
                        "~ cluster {name}: reinstall flux {version} (digest differs; {verified})"
                    ),
                    None => write!(f, "+ cluster {name}: install flux {version} ({verified})"),
                }
            }
            ClusterStep::SyncFlux { name, changes } => {
                write!(f, "~ cluster {name}: flux sync ({})", changes.join("; "))
            }
            ClusterStep::PushArtifact {
                name,
                target,
                digest,
                from,
                files,
            } => {
                let short = |d: &str| d[..d.len().min("sha256:".len() + 12)].to_string();
                match from {
                    Some(old) => write!(
                        f,
                        "~ cluster {name}: push artifact {target} {} → {} ({files} files)",
                        short(old),
                        short(digest)
                    ),
                    None => write!(
                        f,
                        "+ cluster {name}: push artifact {target} {} ({files} files)",
                        short(digest)
                    ),
                }
            }
            ClusterStep::Unmanaged { name } => write!(
                f,
                "! cluster {name}: running but not desired (left running; prune to delete)"
            ),
            ClusterStep::Delete { name } => write!(f, "- cluster {name}"),
        }
    }
}

/// (containerPort, hostPort, protocol, listen address) with kind's default address.
type PortKey = (u16, u16, PortProtocol, String);
type NodeKey = (Role, String, Vec<PortKey>);

/// Port mapping key with kind's defaults made explicit, so desired and observed compare.
fn port_key(m: &PortMapping) -> PortKey {
    let addr = m.listen_address.clone().unwrap_or_else(|| "0.0.0.0".into());
    (m.container_port, m.host_port, m.protocol, addr)
}

fn node_key(role: Role, image: &str, ports: &[PortMapping]) -> NodeKey {
    let mut p: Vec<_> = ports.iter().map(port_key).collect();
    p.sort();
    (role, image.to_string(), p)
}

/// Why the running cluster differs from the spec (kind cannot change nodes in place).
pub fn recreate_reasons(spec: &ClusterSpec, observed: &ObservedCluster) -> Vec<String> {
    let mut want: Vec<_> = spec
        .nodes
        .iter()
        .map(|n| {
            node_key(
                n.role,
                n.image.as_deref().or(spec.image.as_deref()).unwrap_or(""),
                &n.extra_port_mappings,
            )
        })
        .collect();
    let mut have: Vec<_> = observed
        .nodes
        .iter()
        .map(|n| node_key(n.role, &n.image, &n.ports))
        .collect();
    want.sort();
    have.sort();
    if want == have {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    for role in [Role::ControlPlane, Role::Worker] {
        let w = want.iter().filter(|k| k.0 == role).count();
        let h = have.iter().filter(|k| k.0 == role).count();
        if w != h {
            reasons.push(format!("{role} nodes {h} → {w}"));
        }
    }
    let images = |v: &Vec<NodeKey>| {
        let mut i: Vec<String> = v.iter().map(|k| k.1.clone()).collect();
        i.sort();
        i.dedup();
        i
    };
    let (wi, hi) = (images(&want), images(&have));
    if wi != hi {
        reasons.push(format!("node image {} → {}", hi.join(","), wi.join(",")));
    }
    let ports = |v: &Vec<NodeKey>| {
        let mut p: Vec<_> = v.iter().flat_map(|k| k.2.clone()).collect();
        p.sort();
        p
    };
    let (wp, hp) = (ports(&want), ports(&have));
    let show = |p: &PortKey| format!("{}→{}/{}", p.1, p.0, p.2);
    for p in wp.iter().filter(|p| !hp.contains(p)) {
        reasons.push(format!("add port {}", show(p)));
    }
    for p in hp.iter().filter(|p| !wp.contains(p)) {
        reasons.push(format!("remove port {}", show(p)));
    }
    if reasons.is_empty() {
        reasons.push("node layout changed".into());
    }
    reasons
}

fn registry_parts(r: &RegistryObserved) -> Vec<String> {
    let mut parts = Vec::new();
    if !r.network {
        parts.push("connect registry to kind network".to_string());
    }
    if !r.hosts_toml {
        parts.push("containerd hosts.toml".to_string());
    }
    if !r.configmap {
        parts.push("ConfigMap kube-public/local-registry-hosting".to_string());
    }
    parts
}

fn sync_changes(want: &SyncObserved, have: Option<&SyncObserved>) -> Vec<String> {
    let Some(have) = have else {
        let reference = if want.tag.is_empty() {
            want.branch.clone()
        } else {
            format!("tag {}", want.tag)
        };
        return vec![format!(
            "create {} {} ({reference}) and Kustomization {}",
            want.source_kind, want.url, want.path
        )];
    };
    let mut c = Vec::new();
    let mut cmp = |what: &str, h: &str, w: &str| {
        if h != w {
            c.push(format!("{what} {h} → {w}"));
        }
    };
    cmp("source", &have.source_kind, &want.source_kind);
    cmp("url", &have.url, &want.url);
    cmp("branch", &have.branch, &want.branch);
    cmp("tag", &have.tag, &want.tag);
    cmp("interval", &have.interval, &want.interval);
    cmp("path", &have.path, &want.path);
    cmp("sync interval", &have.sync_interval, &want.sync_interval);
    cmp(
        "secret",
        have.secret.as_deref().unwrap_or("none"),
        want.secret.as_deref().unwrap_or("none"),
    );
    if have.prune != want.prune {
        c.push("prune → true".into());
    }
    if have.insecure != want.insecure {
        c.push(format!("insecure → {}", want.insecure));
    }
    c
}

/// A different version, or a pin the installed digest does not match. Without a pin the
/// version decides: the install verified that version's manifest against its checksums.
fn needs_install(want: &FluxResolved, have: Option<&FluxObserved>) -> bool {
    let Some(have) = have else { return true };
    let pin_differs = want
        .sha256
        .as_deref()
        .is_some_and(|p| have.install_sha256.as_deref() != Some(p));
    have.install_version.as_deref() != Some(want.version.as_str())
        || have.install_sha256.is_none()
        || pin_differs
}

/// Steps in execution order: per desired cluster create/recreate, registry, flux install,
/// flux sync; then clusters that are not desired.
pub fn plan(desired: &Desired, observed: &ClustersObserved) -> Vec<ClusterStep> {
    let mut steps = Vec::new();
    for c in &desired.clusters {
        let name = c.name.clone();
        let fresh = RegistryObserved::default();
        let (registry, flux) = match observed.clusters.get(&c.name) {
            None => {
                let image = c
                    .spec
                    .image
                    .clone()
                    .or_else(|| c.spec.nodes.iter().find_map(|n| n.image.clone()));
                steps.push(ClusterStep::Create {
                    name: name.clone(),
                    nodes: c.spec.nodes.len(),
                    image: image.unwrap_or_default(),
                });
                (&fresh, None)
            }
            Some(o) => {
                let reasons = recreate_reasons(&c.spec, o);
                if reasons.is_empty() {
                    (&o.registry, o.flux.as_ref())
                } else if c.spec.recreate {
                    steps.push(ClusterStep::Recreate {
                        name: name.clone(),
                        reasons,
                    });
                    (&fresh, None)
                } else {
                    steps.push(ClusterStep::NeedsRecreate {
                        name: name.clone(),
                        reasons,
                    });
                    (&o.registry, o.flux.as_ref())
                }
            }
        };
        if desired.registry.is_some() {
            let parts = registry_parts(registry);
            if !parts.is_empty() {
                steps.push(ClusterStep::WireRegistry {
                    name: name.clone(),
                    parts,
                });
            }
        }
        let attached = observed
            .clusters
            .get(&c.name)
            .map(|o| &o.host_services)
            .cloned()
            .unwrap_or_default();
        let services: Vec<String> = desired
            .host_services
            .iter()
            .filter(|h| !attached.contains(&h.alias))
            .map(|h| format!("{} as {}", h.service, h.alias))
            .collect();
        if !services.is_empty() {
            steps.push(ClusterStep::AttachHostServices {
                name: name.clone(),
                services,
            });
        }
        if needs_install(&c.flux, flux) {
            steps.push(ClusterStep::InstallFlux {
                name: name.clone(),
                version: c.flux.version.clone(),
                from: flux.and_then(|f| f.install_version.clone()),
                sha256: c.flux.sha256.clone(),
            });
        }
        let in_sync = match (flux, observed.clusters.get(&c.name)) {
            (Some(_), Some(o)) => o.secrets_in_sync.clone(),
            _ => BTreeSet::new(),
        };
        let secrets: Vec<String> = c
            .secrets
            .iter()
            .filter(|s| !in_sync.contains(&s.id()))
            .map(DesiredSecret::describe)
            .collect();
        if !secrets.is_empty() {
            steps.push(ClusterStep::Secrets {
                name: name.clone(),
                secrets,
            });
        }
        // Before the sync objects: the OCIRepository finds its artifact on its first pull.
        if let (FluxSource::Oci(t), Some(a)) = (&c.flux.source, &c.artifact) {
            let have = observed.artifacts.get(&c.name).cloned().flatten();
            if have.as_deref() != Some(a.digest.as_str()) {
                steps.push(ClusterStep::PushArtifact {
                    name: name.clone(),
                    target: format!("{}/{}:{}", t.push_host, t.repository, t.tag),
                    digest: a.digest.clone(),
                    from: have,
                    files: a.files.len(),
                });
            }
        }
        let want = SyncObserved::desired(&c.flux);
        let changes = sync_changes(&want, flux.and_then(|f| f.sync.as_ref()));
        if !changes.is_empty() {
            steps.push(ClusterStep::SyncFlux { name, changes });
        }
    }
    for name in observed.clusters.keys() {
        if desired.clusters.iter().any(|c| &c.name == name) {
            continue;
        }
        steps.push(if desired.prune {
            ClusterStep::Delete { name: name.clone() }
        } else {
            ClusterStep::Unmanaged { name: name.clone() }
        });
    }
    steps
}
