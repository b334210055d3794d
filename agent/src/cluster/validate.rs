//! Checks of `clusters.yaml` against the rest of the host's desired state — the clusters the
//! host selects, the registry service, the host ports the host stacks publish, the Flux
//! `git_url` the agent's source URL stands in for — and, in the same pass, the resolved value
//! apply, diff and status work from (as `routing::validate::resolve` does for routing).

use std::net::IpAddr;

use super::host_services;
use super::plan::{Desired, DesiredCluster, HostService};
use super::registry::Wiring;
use super::secrets::{self, DesiredSecret};
use crate::desired::catalog::{Catalog, Protocol};
use crate::diag::{Diagnostic, Diagnostics};
use crate::input::lines;

use super::file::{split_host_port, ClustersFile, PortProtocol, RegistrySpec};

/// `clusters.yaml` resolved for one host. Only [`resolve`] builds it, from a file it found no
/// error in, so nothing downstream re-checks or fails on what validation could have seen.
#[derive(Debug, Clone, Default)]
pub struct ResolvedClusters {
    /// The clusters the host selects, with their effective Flux settings.
    pub clusters: Vec<DesiredCluster>,
    /// The registry and the container (from the host stacks) that serves it, when a selected
    /// cluster uses it.
    pub registry: Option<(RegistrySpec, String)>,
    /// Host services the clusters reach by name.
    pub host_services: Vec<HostService>,
    /// What loading `clusters.yaml` noted without refusing it.
    pub warnings: Vec<Diagnostic>,
}

impl ResolvedClusters {
    /// The plan's input, and the registry wiring with the nodes on `kind_network`.
    pub fn desired(&self, prune: bool, kind_network: &str) -> (Desired, Option<Wiring>) {
        let wiring = self.registry.as_ref().map(|(spec, container)| Wiring {
            spec: spec.clone(),
            container: container.clone(),
            network: kind_network.to_string(),
        });
        let desired = Desired {
            clusters: self.clusters.clone(),
            registry: self.registry.as_ref().map(|(spec, _)| spec.clone()),
            prune,
            host_services: self.host_services.clone(),
        };
        (desired, wiring)
    }
}

/// Every problem of `f` for a host that selects `selected` (all at once), and the resolved
/// clusters; use the value only when the diagnostics hold no error. `source_url` is the
/// agent's own source URL, Flux's `git_url` where the file sets none.
pub fn resolve(
    f: &ClustersFile,
    catalog: &Catalog,
    selected: &[String],
    source_url: Option<&str>,
) -> (ResolvedClusters, Diagnostics) {
    let mut d = validate(f, catalog, selected);
    let mut clusters = Vec::new();
    for name in selected {
        // An undefined cluster is reported by `validate`.
        let Some(spec) = f.clusters.get(name) else {
            continue;
        };
        match f.flux_for(name, source_url) {
            Ok(flux) => {
                let mut secrets: Vec<DesiredSecret> =
                    spec.secrets.iter().map(DesiredSecret::from_spec).collect();
                if let Some(r) = &flux.secret_ref {
                    let at = if spec.flux.secret_ref.is_some() {
                        format!("clusters.{name}.flux.secret_ref")
                    } else {
                        "flux.secret_ref".to_string()
                    };
                    match DesiredSecret::for_git(r, &flux.git_url) {
                        Ok(mut s) => {
                            s.origin = at;
                            secrets.push(s);
                        }
                        Err(e) => d.error(f.origin.file.as_path(), Some(&f.origin.lines), at, e),
                    }
                }
                clusters.push(DesiredCluster {
                    name: name.clone(),
                    spec: spec.clone(),
                    flux,
                    secrets,
                    artifact: None,
                })
            }
            Err(("git_url", message)) => d.error(
                f.origin.file.as_path(),
                Some(&f.origin.lines),
                format!("clusters.{name}.flux.git_url"),
                message,
            ),
            // The other keys are the file's own business: `file::load` reports them.
            Err(_) => {}
        }
    }
    // An unknown registry service is reported by `validate`.
    let registry = match &f.registry {
        Some(r) if !clusters.is_empty() => catalog
            .get(&r.service)
            .map(|svc| (r.clone(), svc.container_name.clone())),
        _ => None,
    };
    let host_services = if clusters.is_empty() {
        Vec::new()
    } else {
        host_services::resolve(f, catalog, &mut d)
    };
    secrets::check(f, selected, &mut d);
    let resolved = ResolvedClusters {
        clusters,
        registry,
        host_services,
        warnings: Vec::new(),
    };
    (resolved, d)
}

/// One claim on a host port, with where it was made (for the message).
struct Claim {
    owner: String,
    path: Option<String>,
    addr: Option<IpAddr>,
    port: u16,
    proto: PortProtocol,
}

fn overlaps(a: &Claim, b: &Claim) -> bool {
    let any = |x: &Option<IpAddr>| x.is_none_or(|ip| ip.is_unspecified());
    a.port == b.port && a.proto == b.proto && (any(&a.addr) || any(&b.addr) || a.addr == b.addr)
}

/// All cross-file problems at once. `selected` are the cluster names the host runs.
fn validate(f: &ClustersFile, catalog: &Catalog, selected: &[String]) -> Diagnostics {
    let mut d = Diagnostics::default();
    let file = f.origin.file.as_path();
    let idx = Some(&f.origin.lines);
    for name in selected {
        if !f.clusters.contains_key(name) {
            d.error(
                file,
                idx,
                "clusters",
                format!(
                    "the host selects cluster {name:?}, which is not defined here (defined: {})",
                    f.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let active: Vec<&String> = selected
        .iter()
        .filter(|n| f.clusters.contains_key(*n))
        .collect();
    if let (Some(r), false) = (&f.registry, active.is_empty()) {
        match catalog.get(&r.service) {
            None => d.error(
                file,
                idx,
                "registry.service",
                format!(
                    "unknown registry service {:?} (services of this host: {})",
                    r.service,
                    catalog
                        .services
                        .iter()
                        .map(|s| format!("{}/{}", s.stack, s.service))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(svc) => {
                if let Some((_, port)) = split_host_port(&r.host) {
                    if !svc
                        .published
                        .iter()
                        .any(|(_, p, proto)| *p == port && *proto == Protocol::Tcp)
                    {
                        d.error(
                            file,
                            idx,
                            "registry.host",
                            format!(
                                "{} does not publish host port {port} (published: {:?})",
                                r.service,
                                svc.published.iter().map(|p| p.1).collect::<Vec<_>>()
                            ),
                        );
                    }
                }
                if let Some((_, port)) = split_host_port(&r.cluster) {
                    if !svc.container_ports.iter().any(|(p, _)| *p == port) {
                        d.error(
                            file,
                            idx,
                            "registry.cluster",
                            format!("{} does not listen on container port {port}", r.service),
                        );
                    }
                }
            }
        }
    }
    let mut claims: Vec<Claim> = catalog
        .services
        .iter()
        .flat_map(|s| {
            s.published.iter().map(move |(addr, port, proto)| Claim {
                owner: format!("service {}/{}", s.stack, s.service),
                path: None,
                addr: *addr,
                port: *port,
                proto: match proto {
                    Protocol::Tcp => PortProtocol::Tcp,
                    Protocol::Udp => PortProtocol::Udp,
                },
            })
        })
        .collect();
    for name in active {
        let c = &f.clusters[name];
        for (i, n) in c.nodes.iter().enumerate() {
            for (j, m) in n.extra_port_mappings.iter().enumerate() {
                let node = lines::index(&format!("clusters.{name}.nodes"), i);
                let path = lines::index(&format!("{node}.extraPortMappings"), j);
                let claim = Claim {
                    owner: format!("cluster {name}"),
                    path: Some(path.clone()),
                    addr: m.listen_address.as_deref().and_then(|a| a.parse().ok()),
                    port: m.host_port,
                    proto: m.protocol,
                };
                if let Some(other) = claims.iter().find(|o| overlaps(o, &claim)) {
                    let where_ = other
                        .path
                        .as_deref()
                        .map(|p| format!(" at {p}"))
                        .unwrap_or_default();
                    d.error(
                        file,
                        idx,
                        format!("{path}.hostPort"),
                        format!(
                            "host port {}/{} is already used by {}{where_}",
                            m.host_port, m.protocol, other.owner
                        ),
                    );
                }
                claims.push(claim);
            }
        }
    }
    d
}
