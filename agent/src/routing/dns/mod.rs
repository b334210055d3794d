//! Publishing DNS names: each backend makes its store hold exactly the desired names of this
//! agent and nothing else of its own, leaving foreign entries alone. Backends are tried
//! independently; one failing does not stop the others.

pub mod dnsmasq;
pub mod hosts;
pub mod powerdns;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::future::BoxFuture;
use serde::Serialize;

use super::validate::DnsSpec;
use super::RoutingError;

/// Name (lower case, no trailing dot) → address.
pub type Names = BTreeMap<String, Ipv4Addr>;

/// One place names are published to.
pub trait DnsBackend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Make the backend hold `names` for `zone`; Ok(true) when something changed.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        names: &'a Names,
    ) -> BoxFuture<'a, Result<bool, RoutingError>>;
    /// The names this agent publishes there now (read only, for `diff`).
    fn observe<'a>(&'a self, zone: &'a str) -> BoxFuture<'a, Result<Names, RoutingError>>;
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsReport {
    pub tried: usize,
    pub failed: usize,
    pub changed: Vec<&'static str>,
    pub errors: Vec<String>,
}

/// The names a backend's own file holds (`parse` reads them); a missing file holds none.
async fn read_names(
    path: &std::path::Path,
    parse: fn(&str) -> Names,
) -> Result<Names, RoutingError> {
    match tokio::fs::read_to_string(path).await {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Names::new()),
        Err(source) => Err(RoutingError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The backends `spec` configures, in a fixed order (hosts, dnsmasq, powerdns).
pub fn backends(spec: &DnsSpec) -> Vec<Box<dyn DnsBackend>> {
    let b = &spec.backends;
    let mut out: Vec<Box<dyn DnsBackend>> = Vec::new();
    if let Some(h) = &b.hosts {
        out.push(Box::new(hosts::HostsFileBackend::new(h.path.clone())));
    }
    if let Some(d) = &b.dnsmasq {
        out.push(Box::new(dnsmasq::Dnsmasq::from_spec(d)));
    }
    if let Some(p) = &b.powerdns {
        out.push(Box::new(powerdns::PowerDns::from_spec(p)));
    }
    out
}

/// Publish `spec.names` through every backend; keep going past failures.
pub async fn reconcile(spec: &DnsSpec, backends: &[Box<dyn DnsBackend>]) -> DnsReport {
    let mut report = DnsReport::default();
    for b in backends {
        report.tried += 1;
        match b.apply(&spec.zone, &spec.names).await {
            Ok(true) => {
                tracing::info!(
                    backend = b.name(),
                    names = spec.names.len(),
                    "dns names published"
                );
                report.changed.push(b.name());
            }
            Ok(false) => tracing::debug!(backend = b.name(), "dns names already published"),
            Err(e) => {
                tracing::warn!(backend = b.name(), error = %e, "dns backend failed");
                report.failed += 1;
                report.errors.push(format!("{}: {e}", b.name()));
            }
        }
    }
    report
}
