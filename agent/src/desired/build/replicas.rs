//! `deploy.replicas` / `scale`: how many containers a service runs, and what one service
//! setting cannot give to several containers. Compose fails on these only when the second
//! container starts; the agent refuses them before anything changes.

use super::{Report, StackNames};
use crate::desired::compose::Service;
use crate::desired::spec::ServiceSpec;

/// The number of containers `svc` asks for (1 when unset), after checking that `spec`'s
/// container name, host ports, addresses and MAC can be shared by that many.
pub(super) fn replicas(
    svc: &Service,
    spec: &ServiceSpec,
    base: &str,
    names: &StackNames,
    r: &mut Report,
) -> u32 {
    let deploy = svc.deploy.as_ref().and_then(|d| d.replicas);
    let (key, n) = match (deploy, svc.scale) {
        (Some(d), Some(s)) if d != s => {
            r.err(
                format!("{base}.scale"),
                format!("scale: {s} and deploy.replicas: {d} disagree; set one of them"),
            );
            return d;
        }
        (Some(d), _) => ("deploy.replicas", d),
        (None, Some(s)) => ("scale", s),
        (None, None) => return 1,
    };
    if n <= 1 {
        return n;
    }
    let asks = format!("{key} asks for {n} containers");
    if let Some(name) = &svc.container_name {
        r.err(
            format!("{base}.container_name"),
            format!("container_name {name:?} names one container and {asks}: remove container_name (they are named {}-{}-1 … -{n})", spec.project, spec.service),
        );
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let at = format!("{base}.ports[{i}]");
        match (p.host_port, p.host_port_end) {
            (Some(port), None) => r.err(
                at,
                format!("host port {port} can be published by one container only and {asks}: give a range (\"{port}-{}:{}\") or leave the host port out", u32::from(port) + n - 1, p.container_port),
            ),
            (Some(a), Some(b)) if u32::from(b.saturating_sub(a)) + 1 < n => r.err(
                at,
                format!("host port range {a}-{b} has fewer ports than the {n} containers {key} asks for"),
            ),
            _ => {}
        }
    }
    for (net, att) in &spec.networks {
        let net_key = names
            .networks
            .iter()
            .find(|(_, full)| *full == net)
            .map_or(net.as_str(), |(k, _)| k.as_str());
        for (field, set) in [
            ("ipv4_address", att.ipv4_address.is_some()),
            ("ipv6_address", att.ipv6_address.is_some()),
            ("mac_address", att.mac_address.is_some()),
        ] {
            if set {
                r.err(
                    format!("{base}.networks.{net_key}.{field}"),
                    format!("one {field} cannot be given to several containers and {asks}"),
                );
            }
        }
    }
    if spec.runtime.mac_address.is_some() {
        r.err(
            format!("{base}.mac_address"),
            format!("one mac_address cannot be given to several containers and {asks}"),
        );
    }
    n
}
