//! `ports:` and `expose:` entries. A short entry with ranges (`8000-8010:8000-8010`) stands for
//! one port per container port, as Docker's own port-spec parser expands it.

use serde::de::Deserializer;
use serde::Deserialize;

use super::{short_or_long, Scalar};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port, normalised from the short (`127.0.0.1:8080:80/udp`) or long syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<String>,
    pub published: Option<u16>,
    /// Last port of a host range the engine picks one free port from (`8000-8010:80`).
    pub published_end: Option<u16>,
    pub target: u16,
    pub protocol: Protocol,
}

/// One `ports:` item: one port, or several when written with ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry(pub Vec<Port>);

#[derive(Deserialize)]
struct Long {
    target: Scalar,
    published: Option<Scalar>,
    host_ip: Option<String>,
    protocol: Option<String>,
    /// `host` or `ingress`; both mean a host port on a single engine.
    #[allow(dead_code)]
    mode: Option<String>,
    /// Informational only (Compose Specification 2.x); no Engine field.
    #[allow(dead_code)]
    name: Option<String>,
    #[allow(dead_code)]
    app_protocol: Option<String>,
}

pub const PORT_KEYS: &[&str] = &[
    "target",
    "published",
    "host_ip",
    "protocol",
    "mode",
    "name",
    "app_protocol",
];

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            "\"[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/udp]\" or a mapping with target, published, host_ip, protocol, mode",
            |s| parse_short_port(&s).map(PortEntry),
            |l: Long| {
                let protocol = parse_protocol(l.protocol.as_deref().unwrap_or("tcp"))?;
                let (t0, t1) = parse_range(l.target.text())?;
                let (p0, p1) = match l.published.as_ref().and_then(|p| p.0.as_deref()) {
                    None | Some("") => (None, None),
                    Some(p) => {
                        let (a, b) = parse_range(p)?;
                        (Some(a), Some(b))
                    }
                };
                expand(l.host_ip, p0.zip(p1), (t0, t1), protocol).map(PortEntry)
            },
        )
    }
}

pub fn parse_protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!(
            "unsupported protocol {other:?} (expected tcp or udp)"
        )),
    }
}

fn parse_port_number(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
}

/// `8080` or `8000-8010`.
fn parse_range(p: &str) -> Result<(u16, u16), String> {
    match p.split_once('-') {
        None => parse_port_number(p).map(|n| (n, n)),
        Some((a, b)) => {
            let (a, b) = (parse_port_number(a)?, parse_port_number(b)?);
            if b < a {
                return Err(format!("port range {p:?} ends before it starts"));
            }
            Ok((a, b))
        }
    }
}

/// `expose:` entry: `9090` or `9090/udp` (ranges expand as in `ports:`).
pub fn parse_expose(s: &str) -> Result<Vec<(u16, Protocol)>, String> {
    let (port, protocol) = match s.rsplit_once('/') {
        Some((p, proto)) => (p, parse_protocol(proto)?),
        None => (s, Protocol::Tcp),
    };
    let (a, b) = parse_range(port)?;
    Ok((a..=b).map(|p| (p, protocol)).collect())
}

pub fn parse_short_port(s: &str) -> Result<Vec<Port>, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, proto)) => (spec, parse_protocol(proto)?),
        None => (s, Protocol::Tcp),
    };
    // IPv6 host addresses are bracketed (`[::1]:80:80`); split off the brackets first.
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(r) => match r.split_once("]:") {
            Some((ip, rest)) => (Some(ip.to_string()), rest),
            None => return Err(format!("cannot parse port {s:?}")),
        },
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [t]) => (None, None, *t),
        (ip, [t, p]) => (ip, Some(*p), *t),
        (None, [t, p, ip]) => (Some(ip.to_string()), Some(*p), *t),
        _ => return Err(format!("cannot parse port {s:?}")),
    };
    let published = match published {
        Some("") | None => None,
        Some(p) => Some(parse_range(p)?),
    };
    expand(
        host_ip.filter(|ip| !ip.is_empty()),
        published,
        parse_range(target)?,
        protocol,
    )
}

/// Docker's rules: equal-length host and container ranges pair up one to one; a host range for
/// one container port lets the engine pick a free host port from it.
fn expand(
    host_ip: Option<String>,
    published: Option<(u16, u16)>,
    (t0, t1): (u16, u16),
    protocol: Protocol,
) -> Result<Vec<Port>, String> {
    let port = |published: Option<u16>, published_end: Option<u16>, target: u16| Port {
        host_ip: host_ip.clone(),
        published,
        published_end,
        target,
        protocol,
    };
    match published {
        None => Ok((t0..=t1).map(|t| port(None, None, t)).collect()),
        Some((p0, p1)) if t0 == t1 => Ok(vec![port(Some(p0), (p1 != p0).then_some(p1), t0)]),
        Some((p0, p1)) if p1 - p0 == t1 - t0 => Ok((t0..=t1)
            .map(|t| port(Some(p0 + (t - t0)), None, t))
            .collect()),
        Some((p0, p1)) => Err(format!(
            "host ports {p0}-{p1} and container ports {t0}-{t1} are ranges of different lengths"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Port {
        let mut v = parse_short_port(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn short_ports() {
        let p = one("127.0.0.1:5001:5000");
        assert_eq!(
            (p.host_ip.as_deref(), p.published, p.target, p.protocol),
            (Some("127.0.0.1"), Some(5001), 5000, Protocol::Tcp)
        );
        let p = one("4433:4433/udp");
        assert_eq!((p.published, p.protocol), (Some(4433), Protocol::Udp));
        let p = one("80");
        assert_eq!((p.published, p.target), (None, 80));
        let p = one("[::1]:8080:80");
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert!(parse_short_port("80/sctp").is_err());
        assert!(parse_short_port("0").is_err());
    }

    #[test]
    fn ranges_expand_as_docker_does() {
        let v = parse_short_port("8000-8002:9000-9002").unwrap();
        let pairs: Vec<_> = v.iter().map(|p| (p.published, p.target)).collect();
        assert_eq!(
            pairs,
            [(Some(8000), 9000), (Some(8001), 9001), (Some(8002), 9002)]
        );
        let v = parse_short_port("3000-3001").unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|p| p.published.is_none()));
        let p = one("127.0.0.1:8000-8010:80");
        assert_eq!((p.published, p.published_end), (Some(8000), Some(8010)));
        assert!(parse_short_port("8000:9000-9001").is_err());
        assert!(parse_short_port("8000-8001:9000-9002").is_err());
        assert_eq!(parse_expose("7000-7001/udp").unwrap().len(), 2);
    }
}
