//! Checks across services and stacks, on the built `DesiredState`: names, addresses and ports
//! that must be unique, static IPs inside their subnet, and a `depends_on` graph without holes
//! or cycles.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::compose::Protocol;
use super::spec::DesiredState;
use crate::diag::Diagnostics;

pub fn validate(state: &DesiredState) -> Diagnostics {
    let mut d = Diagnostics::default();
    let at = |d: &mut Diagnostics, stack: &str, path: String, msg: String| {
        let src = state.sources.get(stack);
        let file = src.map(|s| s.rel.clone()).unwrap_or_default();
        d.error(&file, src.map(|s| &s.lines), path, msg);
    };

    let mut names: HashMap<String, String> = HashMap::new();
    let mut ips: HashMap<(&str, IpAddr), String> = HashMap::new();
    let mut published: Vec<(Option<IpAddr>, u16, Protocol, String)> = Vec::new();
    for s in &state.services {
        let base = format!("services.{}", s.service);
        // Every replica's name (`<project>-<service>-<n>`), not only the first.
        for n in 1..=s.replicas.max(1) {
            let name = s.replica(n).container_name.clone();
            if let Some(prev) = names.insert(name.clone(), s.key()) {
                at(
                    &mut d,
                    &s.stack,
                    format!("{base}.container_name"),
                    format!("container name {name:?} is also used by {prev}"),
                );
            }
        }
        for (net, att) in &s.networks {
            let Some(ip) = att.ipv4_address else { continue };
            let path = format!(
                "{base}.networks.{}.ipv4_address",
                network_key(state, &s.stack, net)
            );
            if let Some(prev) = ips.insert((net.as_str(), ip), s.key()) {
                at(
                    &mut d,
                    &s.stack,
                    path.clone(),
                    format!("{ip} is also assigned to {prev} on network {net}"),
                );
            }
            match state.networks.get(net).map(|n| n.subnet) {
                Some(Some(subnet)) if !subnet.contains(&ip) => {
                    at(
                        &mut d,
                        &s.stack,
                        path,
                        format!("{ip} is outside network {net}'s subnet {subnet}"),
                    );
                }
                Some(None) => at(
                    &mut d,
                    &s.stack,
                    path,
                    format!(
                        "a static IP needs a subnet: set networks.{}.ipam.config[0].subnet",
                        network_key(state, &s.stack, net)
                    ),
                ),
                _ => {}
            }
        }
        for (i, p) in s.ports.iter().enumerate() {
            let Some(port) = p.host_port else { continue };
            let ip = if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" {
                None
            } else {
                p.host_ip.parse().ok()
            };
            let path = format!("{base}.ports[{i}]");
            if let Some((_, _, _, prev)) = published.iter().find(|(pip, pport, pproto, _)| {
                *pport == port
                    && *pproto == p.protocol
                    && (pip.is_none() || ip.is_none() || *pip == ip)
            }) {
                let shown = if p.host_ip.is_empty() {
                    "0.0.0.0".to_string()
                } else {
                    p.host_ip.clone()
                };
                at(
                    &mut d,
                    &s.stack,
                    path.clone(),
                    format!(
                        "host port {shown}:{port}/{} is also published by {prev}",
                        p.protocol
                    ),
                );
            }
            published.push((ip, port, p.protocol, s.key()));
        }
    }

    // depends_on: names within the stack, no cycles.
    let mut by_stack: BTreeMap<&str, Vec<&super::spec::ServiceSpec>> = BTreeMap::new();
    for s in &state.services {
        by_stack.entry(&s.stack).or_default().push(s);
    }
    for (stack, services) in by_stack {
        let known: BTreeMap<&str, &super::spec::ServiceSpec> =
            services.iter().map(|s| (s.service.as_str(), *s)).collect();
        for s in &services {
            for dep in s.depends_on.keys() {
                if !known.contains_key(dep.as_str()) {
                    at(
                        &mut d,
                        stack,
                        format!("services.{}.depends_on.{dep}", s.service),
                        format!(
                            "depends on unknown service {dep:?} (services in this stack: {})",
                            known.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        }
        let graph: BTreeMap<&str, Vec<&str>> = services
            .iter()
            .map(|s| {
                let deps = s.depends_on.keys().map(String::as_str).collect();
                (s.service.as_str(), deps)
            })
            .collect();
        if let Some(cycle) = super::order::find_cycle(&graph) {
            at(
                &mut d,
                stack,
                format!("services.{}.depends_on", cycle[0]),
                format!("depends_on forms a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
    d
}

fn network_key<'a>(state: &'a DesiredState, stack: &str, full: &'a str) -> &'a str {
    state
        .networks
        .get(full)
        .filter(|n| n.stack == stack)
        .map(|n| n.key.as_str())
        .unwrap_or(full)
}
