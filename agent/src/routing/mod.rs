//! Loopback routing: named loopback addresses, TCP/UDP forwarders run inside the agent (in place
//! of hand-run `socat`), and DNS names published to a hosts file, dnsmasq and PowerDNS.
//!
//! Flow: `file::load` (file → `RoutingFile`, unknown keys and interpolation errors) →
//! `validate::resolve` (against the host's `Catalog` → `Resolved` specs) → `Forwarder::apply`
//! (live listeners) and `dns::reconcile` (backends). `run` ties them together for the
//! foreground `macula-gitops routing run` command.

pub mod bind;
pub mod diff;
pub mod dns;
pub mod file;
pub mod forward;
pub mod resolve;
pub mod run;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use file::{load, RoutingFile};
pub use forward::{ForwardReport, ForwardStatus, Forwarder};
pub use resolve::{DockerResolver, Resolve};
pub use run::{check, load_resolved, run_blocking, run_file, RunOptions};
pub use validate::{
    resolve as resolve_specs, validate, DnsSpec, ForwardSpec, Resolved, TargetSpec,
};

use crate::desired::catalog::Protocol;

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("cannot listen on {listen}/{protocol}: {reason}")]
    Bind {
        listen: SocketAddr,
        protocol: Protocol,
        reason: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve target {target}: {reason}")]
    Resolve { target: String, reason: String },
    #[error("docker: {source}")]
    Docker {
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reload command {command:?} failed: {reason}")]
    Reload { command: String, reason: String },
    #[error("cannot signal the process in {}: {reason}", pidfile.display())]
    Signal { pidfile: PathBuf, reason: String },
    #[error("powerdns {url}: {reason}")]
    PowerDns { url: String, reason: String },
    #[error("powerdns: {} already exist(s) and are not owned by macula-gitops; left alone", names.join(", "))]
    Foreign { names: Vec<String> },
    #[error("cannot add loopback alias {address}: {reason}")]
    Alias {
        address: std::net::IpAddr,
        reason: String,
    },
    #[error("{} is invalid ({} problems):\n{diagnostics}", file.display(), diagnostics.len())]
    Invalid {
        file: PathBuf,
        diagnostics: crate::diag::Diagnostics,
    },
    /// A forward that did not start (`ForwardReport::errors`).
    #[error("forward {name}: {source}")]
    Forward {
        name: String,
        #[source]
        source: Box<RoutingError>,
    },
}

impl RoutingError {
    /// The forward the error is about, if any.
    pub fn forward(&self) -> Option<&str> {
        match self {
            Self::Forward { name, .. } => Some(name),
            _ => None,
        }
    }
}
