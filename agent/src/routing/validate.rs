//! Semantic checks of a `RoutingFile` against the host's service catalog, and the resolved
//! specs the forwarders and DNS backends consume. One pass does both, so what is validated is
//! exactly what runs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;

use super::file::{Backends, RoutingFile};
use crate::desired::catalog::{Catalog, Protocol};
use crate::diag::Diagnostics;

/// One forward, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardSpec {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub target: TargetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSpec {
    /// A service's containers, one per replica: a connection goes to the current IP on
    /// `network` of a running one, in turn (`routing::resolve`).
    Container {
        containers: Vec<String>,
        network: String,
        port: u16,
    },
    /// A host name or IP literal and a port.
    Address { host: String, port: u16 },
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Container {
                containers,
                network,
                port,
            } => match containers.as_slice() {
                [] => write!(f, "(scaled to 0):{port} on {network}"),
                [one] => write!(f, "{one}:{port} on {network}"),
                [first, rest @ ..] => {
                    write!(f, "{first}:{port} on {network} (+{} replicas)", rest.len())
                }
            },
            TargetSpec::Address { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            TargetSpec::Address { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSpec {
    pub zone: String,
    /// Lower-case names without the trailing dot → address.
    pub names: BTreeMap<String, Ipv4Addr>,
    pub backends: Backends,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub loopback: Vec<(Ipv4Addr, String)>,
    pub forwards: Vec<ForwardSpec>,
    pub dns: Option<DnsSpec>,
    /// What loading `routing.yaml` noted without refusing it.
    pub warnings: Vec<crate::diag::Diagnostic>,
}

/// All problems of `f` at once (an empty result means `resolve` succeeds).
pub fn validate(f: &RoutingFile, catalog: &Catalog, file: &Path) -> Diagnostics {
    check(f, catalog, file).1
}

/// The specs to run (with the warnings in `Resolved::warnings`), or every problem found.
pub fn resolve(f: &RoutingFile, catalog: &Catalog) -> Result<Resolved, Diagnostics> {
    let (mut r, d) = check(f, catalog, &f.file);
    if d.has_errors() {
        Err(d)
    } else {
        r.warnings = d.into_sorted();
        Ok(r)
    }
}

fn check(f: &RoutingFile, catalog: &Catalog, file: &Path) -> (Resolved, Diagnostics) {
    let mut c = Checker {
        f,
        file,
        d: Diagnostics::default(),
    };
    let loopback = c.loopback();
    let forwards = c.forwards(catalog);
    let dns = c.dns();
    (
        Resolved {
            loopback,
            forwards,
            dns,
            warnings: Vec::new(),
        },
        c.d,
    )
}

struct Checker<'a> {
    f: &'a RoutingFile,
    file: &'a Path,
    d: Diagnostics,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.d.error(self.file, Some(&self.f.lines), path, msg);
    }

    fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.d.warn(self.file, Some(&self.f.lines), path, msg);
    }

    fn loopback(&mut self) -> Vec<(Ipv4Addr, String)> {
        let mut out = Vec::new();
        let mut by_addr: HashMap<Ipv4Addr, usize> = HashMap::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for (i, l) in self.f.loopback.iter().enumerate() {
            let at = format!("loopback[{i}]");
            match l.address.parse::<Ipv4Addr>() {
                Ok(a) if a.is_loopback() => {
                    if let Some(j) = by_addr.insert(a, i) {
                        self.err(
                            format!("{at}.address"),
                            format!("{a} is already used by loopback[{j}]"),
                        );
                    }
                    out.push((a, l.name.clone()));
                }
                Ok(a) => self.err(
                    format!("{at}.address"),
                    format!("{a} is outside 127.0.0.0/8"),
                ),
                Err(_) => self.err(
                    format!("{at}.address"),
                    format!("{:?} is not an IPv4 address", l.address),
                ),
            }
            if l.name.is_empty() {
                self.err(format!("{at}.name"), "must not be empty");
            } else if let Some(j) = by_name.insert(l.name.as_str(), i) {
                self.err(
                    format!("{at}.name"),
                    format!("name {:?} is already used by loopback[{j}]", l.name),
                );
            }
        }
        out
    }

    fn forwards(&mut self, catalog: &Catalog) -> Vec<ForwardSpec> {
        let mut out = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut listens: Vec<(SocketAddr, Protocol, usize)> = Vec::new();
        for (i, fw) in self.f.forwards.iter().enumerate() {
            let at = format!("forwards[{i}]");
            if fw.name.is_empty() {
                self.err(format!("{at}.name"), "must not be empty");
            } else if let Some(j) = names.insert(fw.name.as_str(), i) {
                self.err(
                    format!("{at}.name"),
                    format!("name {:?} is already used by forwards[{j}]", fw.name),
                );
            }
            let listen = match parse_listen(&fw.listen) {
                Ok(l) => Some(l),
                Err(m) => {
                    self.err(format!("{at}.listen"), m);
                    None
                }
            };
            if let Some((addr, proto)) = listen {
                for (other, oproto, j) in &listens {
                    if *oproto == proto && collides(Some(addr.ip()), addr.port(), other) {
                        self.err(
                            format!("{at}.listen"),
                            format!("{addr}/{proto} collides with forwards[{j}] ({other}/{proto})"),
                        );
                    }
                }
                listens.push((addr, proto, i));
                for s in &catalog.services {
                    for (ip, port, p) in &s.published {
                        if *p == proto && *port == addr.port() && overlaps(*ip, addr.ip()) {
                            let shown = ip.map_or("*".to_string(), |ip| ip.to_string());
                            self.err(
                                format!("{at}.listen"),
                                format!(
                                    "{addr}/{proto} collides with {}/{} which publishes {shown}:{port}/{p}",
                                    s.stack, s.service
                                ),
                            );
                        }
                    }
                }
            }
            let proto = listen.map(|l| l.1);
            let target = self.target(&at, &fw.target, proto, catalog);
            if let (Some((addr, protocol)), Some(target)) = (listen, target) {
                out.push(ForwardSpec {
                    name: fw.name.clone(),
                    listen: addr,
                    protocol,
                    target,
                });
            }
        }
        out
    }

    fn target(
        &mut self,
        at: &str,
        t: &super::file::Target,
        proto: Option<Protocol>,
        catalog: &Catalog,
    ) -> Option<TargetSpec> {
        let at = format!("{at}.target");
        match (&t.service, &t.address) {
            (Some(_), Some(_)) | (None, None) => {
                self.err(
                    at,
                    "set exactly one of `service` (with `port`) or `address`",
                );
                None
            }
            (None, Some(a)) => {
                for (k, set) in [("port", t.port.is_some()), ("network", t.network.is_some())] {
                    if set {
                        self.err(
                            format!("{at}.{k}"),
                            "only with `service` (put the port in `address: host:port`)",
                        );
                    }
                }
                match parse_host_port(a) {
                    Ok((host, port)) => Some(TargetSpec::Address { host, port }),
                    Err(m) => {
                        self.err(format!("{at}.address"), m);
                        None
                    }
                }
            }
            (Some(svc), None) => {
                let Some(s) = catalog.get(svc) else {
                    let known: Vec<String> = catalog
                        .services
                        .iter()
                        .map(|s| format!("{}/{}", s.stack, s.service))
                        .collect();
                    self.err(
                        format!("{at}.service"),
                        format!(
                            "unknown service {svc:?} (expected stack/service; known: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    return None;
                };
                let Some(port) = t.port else {
                    self.err(format!("{at}.port"), "required with `service`");
                    return None;
                };
                if let Some(proto) = proto {
                    if !s.container_ports.contains(&(port, proto)) {
                        let exposed: Vec<String> = s
                            .container_ports
                            .iter()
                            .map(|(p, pr)| format!("{p}/{pr}"))
                            .collect();
                        self.err(
                            format!("{at}.port"),
                            format!(
                                "{svc} does not expose {port}/{proto} (it exposes: {}; add it to ports or x-macula.expose)",
                                if exposed.is_empty() { "nothing".to_string() } else { exposed.join(", ") }
                            ),
                        );
                    }
                }
                let network = match &t.network {
                    None => s.networks.first().cloned(),
                    Some(n) => {
                        let prefixed = format!("{}_{n}", s.stack);
                        s.networks
                            .iter()
                            .find(|x| *x == n || **x == prefixed)
                            .cloned()
                    }
                };
                let Some(network) = network else {
                    self.err(
                        format!("{at}.network"),
                        format!(
                            "{svc} is not attached to {} (its networks: {})",
                            t.network.as_deref().unwrap_or("any network"),
                            s.networks.join(", ")
                        ),
                    );
                    return None;
                };
                if s.containers.is_empty() {
                    self.warn(
                        format!("{at}.service"),
                        format!("{svc} is scaled to 0: the forward has no container to reach"),
                    );
                }
                Some(TargetSpec::Container {
                    containers: s.containers.clone(),
                    network,
                    port,
                })
            }
        }
    }

    fn dns(&mut self) -> Option<DnsSpec> {
        let dns = self.f.dns.as_ref()?;
        let zone = dns.zone.trim_end_matches('.').to_ascii_lowercase();
        if let Err(m) = check_dns_name(&zone) {
            self.err("dns.zone", m);
        }
        let mut names = BTreeMap::new();
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (name, addr) in &dns.names {
            let at = format!("dns.names.{name}");
            let n = name.trim_end_matches('.').to_ascii_lowercase();
            if let Err(m) = check_dns_name(&n) {
                self.err(&at, m);
                continue;
            }
            if n != zone && !n.ends_with(&format!(".{zone}")) {
                self.err(&at, format!("{n} is outside the zone {zone}"));
            }
            if let Some(other) = seen.insert(n.clone(), name) {
                self.err(
                    &at,
                    format!("collides with {other:?} (names are case-insensitive)"),
                );
            }
            match addr.parse::<Ipv4Addr>() {
                Ok(a) => {
                    names.insert(n, a);
                }
                Err(_) => self.err(&at, format!("{addr:?} is not an IPv4 address")),
            }
        }
        let b = &dns.backends;
        if b.hosts.is_none() && b.dnsmasq.is_none() && b.powerdns.is_none() && !names.is_empty() {
            self.err(
                "dns.backends",
                "no backend configured (hosts, dnsmasq, powerdns)",
            );
        }
        if let Some(h) = &b.hosts {
            if h.path.as_os_str().is_empty() {
                self.err("dns.backends.hosts.path", "must not be empty");
            }
        }
        if let Some(m) = &b.dnsmasq {
            let at = "dns.backends.dnsmasq";
            match (&m.reload, &m.pidfile) {
                (Some(_), Some(_)) => self.err(at, "set `reload` or `pidfile`, not both"),
                (None, None) => self.err(
                    at,
                    "set `reload` (e.g. [systemctl, restart, dnsmasq]) or `pidfile`: dnsmasq does not re-read conf files on SIGHUP",
                ),
                (Some(r), None) if r.is_empty() => self.err(format!("{at}.reload"), "must not be empty"),
                _ => {}
            }
            if let Some(s) = &m.signal {
                if m.pidfile.is_none() {
                    self.err(format!("{at}.signal"), "only with `pidfile`");
                } else if super::dns::dnsmasq::parse_signal(s).is_none() {
                    self.err(
                        format!("{at}.signal"),
                        format!("unknown signal {s:?} (e.g. TERM, HUP, USR1)"),
                    );
                }
            }
            if let Some(f) = &m.file {
                if f.is_empty() || f.contains('/') {
                    self.err(format!("{at}.file"), "must be a plain file name");
                }
            }
        }
        if let Some(p) = &b.powerdns {
            let at = "dns.backends.powerdns";
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                self.err(
                    format!("{at}.url"),
                    format!("{:?} is not an http(s) URL", p.url),
                );
            }
            if p.api_key.is_empty() {
                self.err(format!("{at}.api_key"), "must not be empty");
            }
            if p.server.is_empty() {
                self.err(format!("{at}.server"), "must not be empty");
            }
        }
        Some(DnsSpec {
            zone,
            names,
            backends: b.clone(),
        })
    }
}

/// `ip:port/tcp`, `ip:port/udp`, `[v6]:port/tcp`; the protocol defaults to tcp.
pub fn parse_listen(s: &str) -> Result<(SocketAddr, Protocol), String> {
    let (addr, proto) = match s.rsplit_once('/') {
        Some((a, "tcp")) => (a, Protocol::Tcp),
        Some((a, "udp")) => (a, Protocol::Udp),
        Some((_, p)) => return Err(format!("unsupported protocol {p:?} (expected tcp or udp)")),
        None => (s, Protocol::Tcp),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not ip:port/tcp or ip:port/udp"))?;
    if addr.port() == 0 {
        return Err("port 0 is not a fixed port".to_string());
    }
    Ok((addr, proto))
}

/// `host:port` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("{s:?} is not host:port");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn overlaps(a: Option<IpAddr>, b: IpAddr) -> bool {
    match a {
        None => true,
        Some(a) => a.is_unspecified() || b.is_unspecified() || a == b,
    }
}

fn collides(ip: Option<IpAddr>, port: u16, other: &SocketAddr) -> bool {
    port == other.port() && overlaps(ip, other.ip())
}

fn check_dns_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 253 {
        return Err("must be a DNS name of 1 to 253 characters".into());
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{n:?} is not a DNS name (labels of letters, digits and inner '-')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::catalog::ServiceRef;
    use crate::input::Env;

    fn catalog() -> Catalog {
        Catalog {
            services: vec![
                ServiceRef {
                    stack: "observability".into(),
                    service: "prometheus".into(),
                    container_name: "prometheus".into(),
                    containers: vec!["prometheus".into()],
                    networks: vec!["macula-infra".into(), "observability_default".into()],
                    container_ports: vec![(9090, Protocol::Tcp)],
                    published: vec![(Some("127.0.0.1".parse().unwrap()), 9091, Protocol::Tcp)],
                },
                ServiceRef {
                    stack: "edge".into(),
                    service: "quic".into(),
                    container_name: "edge-quic".into(),
                    containers: vec!["edge-quic".into()],
                    networks: vec![],
                    container_ports: vec![(4433, Protocol::Udp)],
                    published: vec![(None, 4433, Protocol::Udp)],
                },
            ],
        }
    }

    fn run(text: &str) -> (Resolved, Vec<String>) {
        let (f, d) = super::super::file::parse(Path::new("routing.yaml"), text, &Env::default());
        assert!(d.is_empty(), "{d}");
        let f = f.unwrap();
        let (r, d) = check(&f, &catalog(), Path::new("routing.yaml"));
        (r, d.into_sorted().iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_forward_to_a_scaled_service_targets_every_replica() {
        let mut scaled = catalog().services.remove(0);
        scaled.containers = (1..=3).map(|n| format!("obs-prometheus-{n}")).collect();
        let catalog = Catalog {
            services: vec![scaled],
        };
        let text = "forwards:\n  - {name: p, listen: 127.0.0.3:9090/tcp, target: {service: observability/prometheus, port: 9090}}\n";
        let (f, d) = super::super::file::parse(Path::new("routing.yaml"), text, &Env::default());
        assert!(d.is_empty(), "{d}");
        let (r, d) = check(&f.unwrap(), &catalog, Path::new("routing.yaml"));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            r.forwards[0].target.to_string(),
            "obs-prometheus-1:9090 on macula-infra (+2 replicas)"
        );
    }

    #[test]
    fn a_forward_to_a_service_scaled_to_0_is_a_warning() {
        let mut scaled = catalog().services.remove(0);
        scaled.containers.clear();
        let catalog = Catalog {
            services: vec![scaled],
        };
        let text = "forwards:\n  - {name: p, listen: 127.0.0.3:9090/tcp, target: {service: observability/prometheus, port: 9090}}\n";
        let (f, _) = super::super::file::parse(Path::new("routing.yaml"), text, &Env::default());
        let r = resolve(&f.unwrap(), &catalog).expect("a warning refuses nothing");
        let w: Vec<String> = r.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("forwards[0].target.service")
                && w[0].contains("observability/prometheus is scaled to 0"),
            "{w:?}"
        );
    }

    #[test]
    fn the_binding_example_is_valid() {
        let (r, d) = run(r#"
loopback:
  - {address: 127.0.0.1, name: host-nginx}
  - {address: 127.0.0.3, name: prometheus}
forwards:
  - name: prometheus
    listen: 127.0.0.3:9090/tcp
    target: {service: observability/prometheus, port: 9090}
  - name: prometheus-default-net
    listen: 127.0.0.3:9092/tcp
    target: {service: observability/prometheus, port: 9090, network: default}
  - name: ingress-http
    listen: 127.0.0.2:80/tcp
    target: {address: 127.0.0.1:8080}
dns:
  zone: macula.local
  names:
    Prometheus.macula.local.: 127.0.0.3
  backends:
    hosts: {path: /etc/hosts}
    dnsmasq: {dir: /etc/dnsmasq.d, reload: [systemctl, restart, dnsmasq]}
    powerdns: {url: "http://127.0.0.1:8081", server: localhost, api_key: k}
"#);
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(r.forwards.len(), 3);
        assert_eq!(
            r.forwards[0].target,
            TargetSpec::Container {
                containers: vec!["prometheus".into()],
                network: "macula-infra".into(),
                port: 9090
            }
        );
        assert!(
            matches!(&r.forwards[1].target, TargetSpec::Container { network, .. } if network == "observability_default")
        );
        assert_eq!(r.forwards[2].target.to_string(), "127.0.0.1:8080");
        let dns = r.dns.unwrap();
        assert_eq!(
            dns.names["prometheus.macula.local"],
            Ipv4Addr::new(127, 0, 0, 3)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (_, d) = run(r#"
loopback:
  - {address: 10.0.0.1, name: a}
  - {address: 127.0.0.3, name: a}
  - {address: 127.0.0.3, name: b}
forwards:
  - {name: f, listen: 127.0.0.3:9090/tcp, target: {service: observability/prometheus, port: 9999}}
  - {name: f, listen: 0.0.0.0:9090/tcp, target: {service: nope/x, port: 1}}
  - {name: g, listen: 127.0.0.1:9091/tcp, target: {address: 127.0.0.1:1}}
  - {name: h, listen: 127.0.0.9:4433/udp, target: {service: edge/quic, port: 4433}}
  - {name: i, listen: 127.0.0.9:1/sctp, target: {address: nope}}
  - {name: j, listen: 127.0.0.9:2/tcp, target: {service: observability/prometheus, port: 9090, network: other}}
dns:
  zone: macula.local
  names:
    grafana.macula.local: 127.0.0.4
    GRAFANA.macula.local: 127.0.0.5
    grafana.example.com: 127.0.0.4
    bad_name.macula.local: 127.0.0.4
    x.macula.local: not-an-ip
  backends:
    dnsmasq: {dir: /tmp}
"#);
        let want = [
            "routing.yaml:3: loopback[0].address: 10.0.0.1 is outside 127.0.0.0/8",
            "routing.yaml:4: loopback[1].name: name \"a\" is already used by loopback[0]",
            "routing.yaml:5: loopback[2].address: 127.0.0.3 is already used by loopback[1]",
            "routing.yaml:7: forwards[0].target.port: observability/prometheus does not expose 9999/tcp (it exposes: 9090/tcp; add it to ports or x-macula.expose)",
            "routing.yaml:8: forwards[1].listen: 0.0.0.0:9090/tcp collides with forwards[0] (127.0.0.3:9090/tcp)",
            "routing.yaml:8: forwards[1].name: name \"f\" is already used by forwards[0]",
            "routing.yaml:8: forwards[1].target.service: unknown service \"nope/x\" (expected stack/service; known: observability/prometheus, edge/quic)",
            "routing.yaml:9: forwards[2].listen: 127.0.0.1:9091/tcp collides with observability/prometheus which publishes 127.0.0.1:9091/tcp",
            "routing.yaml:10: forwards[3].listen: 127.0.0.9:4433/udp collides with edge/quic which publishes *:4433/udp",
            "routing.yaml:10: forwards[3].target.network: edge/quic is not attached to any network (its networks: )",
            "routing.yaml:11: forwards[4].listen: unsupported protocol \"sctp\" (expected tcp or udp)",
            "routing.yaml:11: forwards[4].target.address: \"nope\" is not host:port",
            "routing.yaml:12: forwards[5].target.network: observability/prometheus is not attached to other (its networks: macula-infra, observability_default)",
            "routing.yaml:17: dns.names.GRAFANA.macula.local: collides with \"grafana.macula.local\" (names are case-insensitive)",
            "routing.yaml:18: dns.names.grafana.example.com: grafana.example.com is outside the zone macula.local",
            "routing.yaml:19: dns.names.bad_name.macula.local: \"bad_name.macula.local\" is not a DNS name (labels of letters, digits and inner '-')",
            "routing.yaml:20: dns.names.x.macula.local: \"not-an-ip\" is not an IPv4 address",
            "routing.yaml:22: dns.backends.dnsmasq: set `reload` (e.g. [systemctl, restart, dnsmasq]) or `pidfile`: dnsmasq does not re-read conf files on SIGHUP",
        ];
        assert_eq!(d, want, "{d:#?}");
    }

    #[test]
    fn listen_and_address_syntax() {
        assert_eq!(
            parse_listen("127.0.0.3:4433/udp").unwrap(),
            ("127.0.0.3:4433".parse().unwrap(), Protocol::Udp)
        );
        assert_eq!(parse_listen("[::1]:80").unwrap().1, Protocol::Tcp);
        assert!(parse_listen("127.0.0.3/tcp").is_err());
        assert!(parse_listen("127.0.0.3:0/tcp").is_err());
        assert_eq!(
            parse_host_port("db.local:5432").unwrap(),
            ("db.local".into(), 5432)
        );
        assert_eq!(parse_host_port("[::1]:53").unwrap(), ("::1".into(), 53));
        assert!(parse_host_port(":53").is_err());
    }
}
