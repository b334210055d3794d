//! Host services the clusters reach by name: the service's container joins the nodes' network
//! (`kind`) under an alias, and pods resolve that alias through Docker's embedded DNS — kind's
//! node entrypoint (`enable_network_magic`) makes that DNS reachable from pods. So ExternalDNS
//! reaches PowerDNS as `http://<alias>:8081`: no host port is opened, no address is fixed.

use std::collections::BTreeSet;

use super::docker::NodeOps;
use super::file::ClustersFile;
use super::plan::HostService;
use super::ClusterError;
use crate::desired::catalog::Catalog;
use crate::diag::Diagnostics;

/// A DNS label Docker accepts as an alias and pods can resolve: `[a-z0-9-]`, 1-63, no '-' at
/// either end.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The file's `host_services` against the host's services; every problem into `d`.
pub fn resolve(f: &ClustersFile, catalog: &Catalog, d: &mut Diagnostics) -> Vec<HostService> {
    let (file, idx) = (f.origin.file.as_path(), Some(&f.origin.lines));
    let mut out: Vec<HostService> = Vec::new();
    for (i, h) in f.host_services.iter().enumerate() {
        let at = |k: &str| format!("host_services[{i}].{k}");
        if !is_dns_label(&h.alias) {
            d.error(
                file,
                idx,
                at("alias"),
                format!(
                    "{:?} is not a DNS label (a-z, 0-9, '-', at most 63)",
                    h.alias
                ),
            );
        } else if out.iter().any(|o| o.alias == h.alias)
            || f.registry
                .as_ref()
                .is_some_and(|r| r.cluster.starts_with(&format!("{}:", h.alias)))
        {
            d.error(
                file,
                idx,
                at("alias"),
                format!("alias {:?} is used twice", h.alias),
            );
        }
        match catalog.get(&h.service) {
            Some(svc) => out.push(HostService {
                service: h.service.clone(),
                containers: svc.containers.clone(),
                alias: h.alias.clone(),
            }),
            None => d.error(
                file,
                idx,
                at("service"),
                format!(
                    "unknown service {:?} (not among this host's services)",
                    h.service
                ),
            ),
        }
    }
    out
}

/// Aliases of `services` already attached to `network`.
pub async fn observe(
    ops: &impl NodeOps,
    network: &str,
    services: &[HostService],
) -> Result<BTreeSet<String>, ClusterError> {
    let mut attached = BTreeSet::new();
    'services: for h in services {
        for c in &h.containers {
            if !ops
                .aliases(network, c)
                .await?
                .is_some_and(|a| a.contains(&h.alias))
            {
                continue 'services;
            }
        }
        attached.insert(h.alias.clone());
    }
    Ok(attached)
}

/// Attach every service not yet on `network`; idempotent (several clusters plan it).
pub async fn attach(
    ops: &impl NodeOps,
    network: &str,
    services: &[HostService],
) -> Result<(), ClusterError> {
    for h in services {
        for c in &h.containers {
            match ops.aliases(network, c).await? {
                Some(a) if a.contains(&h.alias) => {}
                Some(_) => {
                    return Err(ClusterError::Exec {
                        subject: format!("host service {} ({c})", h.service),
                        message: format!(
                            "attached to network {network} without alias {}; disconnect it so it can be reconnected with the alias",
                            h.alias
                        ),
                    })
                }
                None => ops.connect(network, c, &h.alias).await?,
            }
        }
    }
    Ok(())
}
