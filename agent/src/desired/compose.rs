//! The Compose file subset, as written by users. These types mirror the file (short and long
//! syntaxes both accepted); `desired::spec` turns them into the normalised spec the planner uses.
//!
//! Unknown keys are not rejected by serde here: the loader collects every ignored key with
//! `serde_ignored`, so one run reports all of them with the keys that are supported.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ComposeFile {
    pub name: Option<String>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default)]
    pub networks: IndexMap<String, Option<NetworkDef>>,
    #[serde(default)]
    pub volumes: IndexMap<String, Option<VolumeDef>>,
}

pub const TOP_LEVEL_KEYS: &[&str] = &["name", "services", "networks", "volumes", "x-*"];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub container_name: Option<String>,
    pub command: Option<CommandLine>,
    pub entrypoint: Option<CommandLine>,
    #[serde(default)]
    pub environment: KeyValues,
    pub env_file: Option<OneOrMany>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub volumes: Vec<Mount>,
    #[serde(default)]
    pub networks: ServiceNetworks,
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub depends_on: DependsOn,
    pub restart: Option<String>,
    #[serde(default)]
    pub labels: KeyValues,
    pub user: Option<Scalar>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub extra_hosts: ExtraHosts,
    /// Container ports reachable on the service's networks without publishing them
    /// (`"9090"`, `9090`, `"4433/udp"`): what routing forwards may target.
    #[serde(default)]
    pub expose: Vec<Scalar>,
    /// Agent-specific settings, in an extension key so Compose still loads the file.
    #[serde(rename = "x-macula", default)]
    pub x_macula: XMacula,
}

pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "healthcheck",
    "depends_on",
    "restart",
    "labels",
    "user",
    "working_dir",
    "hostname",
    "cap_add",
    "extra_hosts",
    "expose",
    "x-macula",
    "x-*",
];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct XMacula {
    /// Binding the Docker socket hands the container root on the host: it must be asked for.
    #[serde(default)]
    pub allow_docker_socket: bool,
}

/// A YAML scalar read as text (`3`, `true` and `"3"` all become strings), as Compose does
/// for environment values, labels and the like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        scalar_text(&v).map(Scalar).map_err(|what| {
            de::Error::custom(format!(
                "expected a string, number or boolean, found {what}"
            ))
        })
    }
}

fn scalar_text(v: &serde_yaml::Value) -> Result<Option<String>, &'static str> {
    use serde_yaml::Value as V;
    match v {
        V::Null => Ok(None),
        V::Bool(b) => Ok(Some(b.to_string())),
        V::Number(n) => Ok(Some(n.to_string())),
        V::String(s) => Ok(Some(s.clone())),
        V::Sequence(_) => Err("a list"),
        V::Mapping(_) => Err("a mapping"),
        V::Tagged(_) => Err("a tagged value"),
    }
}

/// `KEY: value` mapping or `["KEY=value", "KEY"]` list (environment, labels, build args).
/// A value of `None` means "take it from the environment" (Compose's bare `KEY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(pub BTreeMap<String, Option<String>>);

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, Scalar>),
            List(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a mapping of KEY: value or a list of \"KEY=value\" strings")
        })?;
        Ok(KeyValues(match raw {
            Raw::Map(m) => m.into_iter().map(|(k, v)| (k, v.0)).collect(),
            Raw::List(l) => l
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
                .collect(),
        }))
    }
}

/// A string, or a list of scalars read as strings: the shape of `env_file`, `command`,
/// `entrypoint` and `healthcheck.test`. Each caller decides what a lone string means.
enum StrOrList {
    One(String),
    Many(Vec<String>),
}

impl StrOrList {
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<Scalar>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(StrOrList::One(s)),
            Ok(Raw::Many(v)) => Ok(StrOrList::Many(
                v.into_iter().map(|s| s.0.unwrap_or_default()).collect(),
            )),
            Err(_) => Err(de::Error::custom("expected a string or a list of strings")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OneOrMany(match StrOrList::read(d)? {
            StrOrList::One(s) => vec![s],
            StrOrList::Many(v) => v,
        }))
    }
}

/// `command`/`entrypoint`: a string (split like a shell would, no shell run) or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOrList::read(d)? {
            StrOrList::One(s) => shell_words::split(&s)
                .map(CommandLine)
                .map_err(|e| de::Error::custom(format!("cannot split command {s:?}: {e}"))),
            StrOrList::Many(v) => Ok(CommandLine(v)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: KeyValues,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(default = "dot")]
            context: String,
            dockerfile: Option<String>,
            #[serde(default)]
            args: KeyValues,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Short(String),
            Long(Long),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Short(context)) => Ok(Build {
                context,
                dockerfile: None,
                args: KeyValues::default(),
            }),
            Ok(Raw::Long(l)) => Ok(Build {
                context: l.context,
                dockerfile: l.dockerfile,
                args: l.args,
            }),
            Err(_) => Err(de::Error::custom(
                "expected a context path or a mapping with context, dockerfile, args",
            )),
        }
    }
}

fn dot() -> String {
    ".".into()
}

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
    pub target: u16,
    pub protocol: Protocol,
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            target: u16,
            published: Option<Scalar>,
            host_ip: Option<String>,
            protocol: Option<String>,
            #[allow(dead_code)]
            mode: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u16),
            Short(String),
            Long(Long),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected \"[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/udp]\" or a mapping with target, published, host_ip, protocol, mode",
            )
        })?;
        match raw {
            Raw::Num(target) => Ok(Port {
                host_ip: None,
                published: None,
                target,
                protocol: Protocol::Tcp,
            }),
            Raw::Short(s) => parse_short_port(&s).map_err(de::Error::custom),
            Raw::Long(l) => {
                let published = match l.published.and_then(|p| p.0) {
                    None => None,
                    Some(p) => Some(parse_port_number(&p).map_err(de::Error::custom)?),
                };
                Ok(Port {
                    host_ip: l.host_ip,
                    published,
                    target: l.target,
                    protocol: parse_protocol(l.protocol.as_deref().unwrap_or("tcp"))
                        .map_err(de::Error::custom)?,
                })
            }
        }
    }
}

fn parse_protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!(
            "unsupported protocol {other:?} (expected tcp or udp)"
        )),
    }
}

fn parse_port_number(p: &str) -> Result<u16, String> {
    if p.contains('-') {
        return Err(format!(
            "port ranges are not supported ({p:?}): list each port"
        ));
    }
    p.parse::<u16>()
        .map_err(|_| format!("{p:?} is not a port number (1-65535)"))
}

/// `expose:` entry: `9090` or `9090/udp`.
pub fn parse_expose(s: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = match s.rsplit_once('/') {
        Some((p, proto)) => (p, parse_protocol(proto)?),
        None => (s, Protocol::Tcp),
    };
    Ok((parse_port_number(port)?, protocol))
}

pub fn parse_short_port(s: &str) -> Result<Port, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, proto)) => (spec, parse_protocol(proto)?),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (host_ip, published, target) = match parts.as_slice() {
        [t] => (None, None, *t),
        [t, p] => (None, Some(*p), *t),
        [t, p, ip] => (Some(ip.trim_matches(['[', ']']).to_string()), Some(*p), *t),
        _ => return Err(format!("cannot parse port {s:?}")),
    };
    let published = match published {
        Some("") | None => None,
        Some(p) => Some(parse_port_number(p)?),
    };
    Ok(Port {
        host_ip: host_ip.filter(|ip| !ip.is_empty()),
        published,
        target: parse_port_number(target)?,
        protocol,
    })
}

/// One entry of a service's `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Named volume, bind source path, or `None` for an anonymous volume.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub kind: MountKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Volume,
    Bind,
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(rename = "type")]
            kind: String,
            source: Option<String>,
            target: String,
            #[serde(default)]
            read_only: bool,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Short(String),
            Long(Long),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected \"SOURCE:TARGET[:ro]\" or a mapping with type (volume|bind), source, target, read_only",
            )
        })?;
        match raw {
            Raw::Short(s) => parse_short_mount(&s).map_err(de::Error::custom),
            Raw::Long(l) => {
                let kind = match l.kind.as_str() {
                    "volume" => MountKind::Volume,
                    "bind" => MountKind::Bind,
                    other => {
                        return Err(de::Error::custom(format!(
                            "unsupported mount type {other:?} (expected volume or bind)"
                        )))
                    }
                };
                Ok(Mount {
                    source: l.source,
                    target: l.target,
                    read_only: l.read_only,
                    kind,
                })
            }
        }
    }
}

fn parse_short_mount(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [src, t] => (Some(*src), *t, None),
        [src, t, m] => (Some(*src), *t, Some(*m)),
        _ => return Err(format!("cannot parse volume {s:?}")),
    };
    let read_only = match mode {
        None => false,
        Some(m) => {
            let flags: Vec<&str> = m.split(',').collect();
            if let Some(bad) = flags
                .iter()
                .find(|f| !matches!(**f, "ro" | "rw" | "z" | "Z"))
            {
                return Err(format!(
                    "unsupported volume mode {bad:?} in {s:?} (expected ro or rw)"
                ));
            }
            flags.contains(&"ro")
        }
    };
    let kind = match source {
        Some(src) if src.starts_with(['.', '/', '~']) => MountKind::Bind,
        _ => MountKind::Volume,
    };
    Ok(Mount {
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        kind,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    pub ipv4_address: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `networks: [a, b]` or `networks: {a: {ipv4_address: ..., aliases: [...]}, b: null}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNetworks(pub IndexMap<String, NetworkAttachment>);

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Map(IndexMap<String, Option<NetworkAttachment>>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::List(l)) => Ok(ServiceNetworks(
                l.into_iter()
                    .map(|n| (n, NetworkAttachment::default()))
                    .collect(),
            )),
            Ok(Raw::Map(m)) => Ok(ServiceNetworks(
                m.into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect(),
            )),
            Err(_) => Err(de::Error::custom(
                "expected a list of network names or a mapping of network: {ipv4_address, aliases}",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependsOn(pub IndexMap<String, Condition>);

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            #[serde(default = "started")]
            condition: Condition,
            #[allow(dead_code)]
            restart: Option<bool>,
            #[allow(dead_code)]
            required: Option<bool>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Map(IndexMap<String, Entry>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::List(l)) => Ok(DependsOn(
                l.into_iter().map(|s| (s, Condition::ServiceStarted)).collect(),
            )),
            Ok(Raw::Map(m)) => Ok(DependsOn(
                m.into_iter().map(|(k, e)| (k, e.condition)).collect(),
            )),
            Err(_) => Err(de::Error::custom(
                "expected a list of services or a mapping of service: {condition: service_started | service_healthy | service_completed_successfully}",
            )),
        }
    }
}

fn started() -> Condition {
    Condition::ServiceStarted
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Healthcheck {
    pub test: Option<HealthTest>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

pub const HEALTHCHECK_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];

/// `test: "curl -f x"` (run with the shell) or `["CMD", ...]` / `["CMD-SHELL", "..."]` / `["NONE"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTest(pub Vec<String>);

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match OneOrMany::deserialize(d)? {
            OneOrMany(v) if v.len() == 1 && !matches!(v[0].as_str(), "NONE") => {
                Ok(HealthTest(vec!["CMD-SHELL".into(), v[0].clone()]))
            }
            OneOrMany(v) => Ok(HealthTest(v)),
        }
    }
}

/// `extra_hosts: ["host:ip"]` / `["host=ip"]` or a mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraHosts(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Map(BTreeMap<String, String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Map(m)) => Ok(ExtraHosts(m)),
            Ok(Raw::List(l)) => l
                .into_iter()
                .map(|e| {
                    e.split_once('=')
                        .or_else(|| e.split_once(':'))
                        .map(|(h, ip)| (h.to_string(), ip.to_string()))
                        .ok_or_else(|| {
                            de::Error::custom(format!("expected \"host:ip\", found {e:?}"))
                        })
                })
                .collect::<Result<_, _>>()
                .map(ExtraHosts),
            Err(_) => Err(de::Error::custom(
                "expected a list of \"host:ip\" or a mapping",
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkDef {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub external: bool,
    pub ipam: Option<Ipam>,
    #[serde(default)]
    pub labels: KeyValues,
}

pub const NETWORK_KEYS: &[&str] = &["name", "driver", "external", "ipam", "labels"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ipam {
    pub driver: Option<String>,
    #[serde(default)]
    pub config: Vec<IpamConfig>,
}

pub const IPAM_KEYS: &[&str] = &["driver", "config"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

pub const IPAM_CONFIG_KEYS: &[&str] = &["subnet", "gateway"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VolumeDef {
    pub name: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub labels: KeyValues,
}

pub const VOLUME_KEYS: &[&str] = &["name", "external", "labels"];

/// The keys supported where an unknown key was found, for the error message.
/// `path` is the dotted path of the unknown key.
pub fn supported_keys_at(path: &str) -> &'static [&'static str] {
    let segs: Vec<&str> = path.split('.').collect();
    match segs.as_slice() {
        [_] => TOP_LEVEL_KEYS,
        ["services", _, "healthcheck", _] => HEALTHCHECK_KEYS,
        ["services", _, "x-macula", _] => &["allow_docker_socket"],
        ["services", _, _] => SERVICE_KEYS,
        ["networks", _, "ipam", _] => IPAM_KEYS,
        ["networks", _, "ipam", "config", ..] => IPAM_CONFIG_KEYS,
        ["networks", _, _] => NETWORK_KEYS,
        ["volumes", _, _] => VOLUME_KEYS,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = parse_short_port("127.0.0.1:5001:5000").unwrap();
        assert_eq!(
            (p.host_ip.as_deref(), p.published, p.target, p.protocol),
            (Some("127.0.0.1"), Some(5001), 5000, Protocol::Tcp)
        );
        let p = parse_short_port("4433:4433/udp").unwrap();
        assert_eq!((p.published, p.protocol), (Some(4433), Protocol::Udp));
        let p = parse_short_port("80").unwrap();
        assert_eq!((p.published, p.target), (None, 80));
        assert!(parse_short_port("8000-8010:80").is_err());
        assert!(parse_short_port("80/sctp").is_err());
    }

    #[test]
    fn mixed_syntaxes_load() {
        let text = r#"
services:
  web:
    image: busybox
    command: httpd -f -p 8080
    environment: [A=1, B]
    ports:
      - "8080:80"
      - {target: 53, published: "5353", protocol: udp, host_ip: 127.0.0.1}
    volumes:
      - data:/data
      - ./conf/httpd.conf:/etc/httpd.conf:ro
      - {type: bind, source: ./x, target: /x, read_only: true}
    networks:
      infra: {ipv4_address: 172.30.0.5, aliases: [www]}
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: "wget -q -O- localhost:8080", interval: 5s, retries: 3}
    labels: {tier: "1"}
  db:
    image: busybox
    depends_on: [web]
    networks: [infra]
    environment: {N: 3, T: true}
    expose: [9090, "4433/udp"]
"#;
        let f: ComposeFile = serde_yaml::from_str(text).unwrap();
        let web = &f.services["web"];
        assert_eq!(
            web.command.as_ref().unwrap().0,
            ["httpd", "-f", "-p", "8080"]
        );
        assert_eq!(web.environment.0["B"], None);
        assert_eq!(web.ports[1].protocol, Protocol::Udp);
        assert_eq!(web.ports[1].published, Some(5353));
        assert_eq!(web.volumes[0].kind, MountKind::Volume);
        assert_eq!(web.volumes[1].kind, MountKind::Bind);
        assert!(web.volumes[1].read_only && web.volumes[2].read_only);
        assert_eq!(web.networks.0["infra"].aliases, ["www"]);
        assert_eq!(web.depends_on.0["db"], Condition::ServiceHealthy);
        assert_eq!(
            web.healthcheck.as_ref().unwrap().test.as_ref().unwrap().0,
            ["CMD-SHELL", "wget -q -O- localhost:8080"]
        );
        let db = &f.services["db"];
        assert_eq!(db.depends_on.0["web"], Condition::ServiceStarted);
        assert_eq!(db.environment.0["N"].as_deref(), Some("3"));
        assert_eq!(db.environment.0["T"].as_deref(), Some("true"));
        let exposed: Vec<_> = db
            .expose
            .iter()
            .map(|s| parse_expose(s.0.as_deref().unwrap()).unwrap())
            .collect();
        assert_eq!(exposed, [(9090, Protocol::Tcp), (4433, Protocol::Udp)]);
        assert!(parse_expose("99999").is_err());
    }
}
