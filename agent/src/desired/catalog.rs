//! A flat view of the host's services for the other desired-state files (routing, clusters):
//! which `stack/service` exists, its container, networks, container ports and published ports.

use std::net::IpAddr;

use serde::Serialize;

pub use super::compose::Protocol;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRef {
    pub stack: String,
    pub service: String,
    /// The first replica's container: what a registry or another single-container lookup uses.
    pub container_name: String,
    /// Every replica's container in number order (`<project>-<service>-<n>` past the first;
    /// none for a service scaled to 0): forwards spread over the running ones, and a cluster's
    /// host service joins them all under its alias (Docker's DNS answers with every one).
    pub containers: Vec<String>,
    /// Full Docker network names the container is attached to, in file order.
    pub networks: Vec<String>,
    /// Container ports the service uses (every `ports[].target`, plus `x-macula.expose`).
    pub container_ports: Vec<(u16, Protocol)>,
    /// Host ports the service publishes: (host ip — `None` means all addresses —, port, protocol).
    pub published: Vec<(Option<IpAddr>, u16, Protocol)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    pub services: Vec<ServiceRef>,
}

impl Catalog {
    /// Look up `stack/service`.
    pub fn get(&self, reference: &str) -> Option<&ServiceRef> {
        let (stack, service) = reference.split_once('/')?;
        self.services
            .iter()
            .find(|s| s.stack == stack && s.service == service)
    }
}
