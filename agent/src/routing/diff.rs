//! What the next pass would change in routing, for `diff` (text and `--output json`): forwards
//! against the ones the running daemon serves (its `/status`; forwards live in `run`), loopback
//! aliases missing on this host, and the DNS names of each backend against what the backend
//! holds now. Every store is read, never written. The comparisons are pure; the reads are
//! `observe`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::dns::{self, Names};
use super::validate::{ForwardSpec, Resolved};
use crate::outcome::{Action, Change, Subject, SubjectKind};

/// How long `diff` waits for the daemon's `/status` and for each DNS backend.
pub const READ_WITHIN: Duration = Duration::from_secs(3);

/// A forward as the daemon serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedForward {
    pub name: String,
    /// `127.0.0.3:9090/tcp`.
    pub listen: String,
    pub target: String,
}

/// Routing's part of `diff`: the changes, and what could not be read (each a `!` line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoutingDiff {
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl RoutingDiff {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.warnings.is_empty()
    }
}

impl std::fmt::Display for RoutingDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.changes {
            writeln!(f, "{}", c.line)?;
        }
        for w in &self.warnings {
            writeln!(f, "! {w}")?;
        }
        Ok(())
    }
}

fn listen_of(f: &ForwardSpec) -> String {
    format!("{}/{}", f.listen, f.protocol)
}

fn change(kind: SubjectKind, name: &str, action: Action, line: String) -> Change {
    Change {
        subject: Subject::new(kind, name),
        action,
        line,
    }
}

/// Forwards by name: `+` new, `-` gone, `~` listen or target changed.
pub fn forward_changes(desired: &[ForwardSpec], observed: &[ObservedForward]) -> Vec<Change> {
    let have: BTreeMap<&str, &ObservedForward> =
        observed.iter().map(|o| (o.name.as_str(), o)).collect();
    let mut out = Vec::new();
    for f in desired {
        let (listen, target) = (listen_of(f), f.target.to_string());
        match have.get(f.name.as_str()) {
            None => out.push(change(
                SubjectKind::Forward,
                &f.name,
                Action::Create,
                format!("+ forward {} {listen} → {target}", f.name),
            )),
            Some(o) => {
                let mut parts = Vec::new();
                if o.listen != listen {
                    parts.push(format!("listen {} → {listen}", o.listen));
                }
                if o.target != target {
                    parts.push(format!("target {} → {target}", o.target));
                }
                if !parts.is_empty() {
                    out.push(change(
                        SubjectKind::Forward,
                        &f.name,
                        Action::Update,
                        format!("~ forward {}: {}", f.name, parts.join("; ")),
                    ));
                }
            }
        }
    }
    for o in observed {
        if !desired.iter().any(|f| f.name == o.name) {
            out.push(change(
                SubjectKind::Forward,
                &o.name,
                Action::Remove,
                format!("- forward {} {} → {}", o.name, o.listen, o.target),
            ));
        }
    }
    out
}

/// One backend's names: `+` to publish, `~` a new address, `-` to withdraw.
pub fn dns_changes(backend: &str, desired: &Names, observed: &Names) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, ip) in desired {
        match observed.get(name) {
            None => out.push(change(
                SubjectKind::Dns,
                name,
                Action::Create,
                format!("+ dns {name} → {ip} ({backend})"),
            )),
            Some(old) if old != ip => out.push(change(
                SubjectKind::Dns,
                name,
                Action::Update,
                format!("~ dns {name} {old} → {ip} ({backend})"),
            )),
            Some(_) => {}
        }
    }
    for (name, old) in observed {
        if !desired.contains_key(name) {
            out.push(change(
                SubjectKind::Dns,
                name,
                Action::Remove,
                format!("- dns {name} {old} ({backend})"),
            ));
        }
    }
    out
}

/// The daemon's forwards from its `/status` at `addr`.
async fn daemon_forwards(addr: SocketAddr) -> Result<Vec<ObservedForward>, String> {
    let status = tokio::time::timeout(READ_WITHIN, crate::server::client::status(addr))
        .await
        .map_err(|_| format!("daemon at {addr}: no answer within {READ_WITHIN:?}"))?
        .map_err(|e| e.to_string())?;
    let field = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string())
            })
            .unwrap_or_default()
    };
    Ok(status
        .forwards
        .iter()
        .map(|v| ObservedForward {
            name: field(v, "name"),
            listen: format!("{}/{}", field(v, "listen"), field(v, "protocol")),
            target: field(v, "target"),
        })
        .collect())
}

/// Read what routing has now and compare it with `r`. `daemon` is the address of the daemon
/// whose forwards count (the agent config's `listen`); `None` compares with no forwards.
pub async fn observe(r: &Resolved, daemon: Option<SocketAddr>) -> RoutingDiff {
    let mut d = RoutingDiff::default();
    if !r.forwards.is_empty() || daemon.is_some() {
        let observed = match daemon {
            Some(addr) => match daemon_forwards(addr).await {
                Ok(o) => o,
                Err(e) => {
                    d.warnings.push(format!(
                        "forwards: not compared with a running daemon ({e}); listed as a new `macula-gitops run` starts them"
                    ));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        d.changes.extend(forward_changes(&r.forwards, &observed));
    }
    for (address, name) in &r.loopback {
        if !super::bind::address_present((*address).into()) {
            d.changes.push(change(
                SubjectKind::Loopback,
                &address.to_string(),
                Action::Create,
                format!("+ loopback {address} ({name})"),
            ));
        }
    }
    if let Some(spec) = &r.dns {
        for b in dns::backends(spec) {
            match tokio::time::timeout(READ_WITHIN, b.observe(&spec.zone)).await {
                Ok(Ok(have)) => d.changes.extend(dns_changes(b.name(), &spec.names, &have)),
                Ok(Err(e)) => d
                    .warnings
                    .push(format!("dns {}: cannot read: {e}", b.name())),
                Err(_) => d.warnings.push(format!(
                    "dns {}: no answer within {READ_WITHIN:?}",
                    b.name()
                )),
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::catalog::Protocol;
    use crate::routing::validate::TargetSpec;

    fn fwd(name: &str, listen: &str, host: &str, port: u16) -> ForwardSpec {
        ForwardSpec {
            name: name.into(),
            listen: listen.parse().unwrap(),
            protocol: Protocol::Tcp,
            target: TargetSpec::Address {
                host: host.into(),
                port,
            },
        }
    }

    fn obs(name: &str, listen: &str, target: &str) -> ObservedForward {
        ObservedForward {
            name: name.into(),
            listen: listen.into(),
            target: target.into(),
        }
    }

    fn lines(c: &[Change]) -> Vec<&str> {
        c.iter().map(|c| c.line.as_str()).collect()
    }

    #[test]
    fn forwards_by_name() {
        let desired = [
            fwd("same", "127.0.0.3:9090", "127.0.0.1", 1),
            fwd("moved", "127.0.0.4:80", "127.0.0.1", 2),
            fwd("new", "127.0.0.5:80", "web", 80),
        ];
        let observed = [
            obs("same", "127.0.0.3:9090/tcp", "127.0.0.1:1"),
            obs("moved", "127.0.0.4:8080/tcp", "127.0.0.1:3"),
            obs("gone", "127.0.0.6:53/udp", "dns:53"),
        ];
        assert_eq!(
            lines(&forward_changes(&desired, &observed)),
            [
                "~ forward moved: listen 127.0.0.4:8080/tcp → 127.0.0.4:80/tcp; target 127.0.0.1:3 → 127.0.0.1:2",
                "+ forward new 127.0.0.5:80/tcp → web:80",
                "- forward gone 127.0.0.6:53/udp → dns:53",
            ]
        );
        assert!(forward_changes(&desired[..1], &observed[..1]).is_empty());
    }

    #[test]
    fn dns_names_per_backend() {
        let ip = |s: &str| s.parse().unwrap();
        let desired: Names = [
            ("a.z".into(), ip("127.0.0.3")),
            ("b.z".into(), ip("127.0.0.4")),
        ]
        .into();
        let observed: Names = [
            ("b.z".into(), ip("127.0.0.9")),
            ("c.z".into(), ip("127.0.0.5")),
        ]
        .into();
        let c = dns_changes("hosts", &desired, &observed);
        assert_eq!(
            lines(&c),
            [
                "+ dns a.z → 127.0.0.3 (hosts)",
                "~ dns b.z 127.0.0.9 → 127.0.0.4 (hosts)",
                "- dns c.z 127.0.0.5 (hosts)",
            ]
        );
        assert_eq!(c[0].action, Action::Create);
        assert!(dns_changes("hosts", &desired, &desired).is_empty());
    }
}
