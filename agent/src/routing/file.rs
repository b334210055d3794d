//! `desired-state/routing.yaml`: the file as written, loaded with interpolation and unknown-key
//! detection. Each list item is deserialised on its own so one bad item does not hide the
//! problems of the others; semantic checks live in `validate.rs`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml::Value;

use crate::diag::Diagnostics;
use crate::input::deserialize::unknown_key_message;
use crate::input::lines::{self, LineIndex};
use crate::input::{self, deserialize_at, Env, Limits, SourceFile};

#[derive(Debug, Clone, Default)]
pub struct RoutingFile {
    pub file: PathBuf,
    pub lines: LineIndex,
    pub loopback: Vec<Loopback>,
    pub forwards: Vec<Forward>,
    pub dns: Option<Dns>,
}

pub const TOP_LEVEL_KEYS: &[&str] = &["loopback", "forwards", "dns"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Loopback {
    /// Kept as text until validation so a bad address is reported with its path.
    pub address: String,
    pub name: String,
}

pub const LOOPBACK_KEYS: &[&str] = &["address", "name"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Forward {
    pub name: String,
    /// `ip:port/tcp` or `ip:port/udp`.
    pub listen: String,
    pub target: Target,
}

pub const FORWARD_KEYS: &[&str] = &["name", "listen", "target"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Target {
    /// `stack/service` from the host's Compose files.
    pub service: Option<String>,
    pub port: Option<u16>,
    /// Docker network to take the container's IP from (default: the service's first network).
    pub network: Option<String>,
    /// Plain `host:port`.
    pub address: Option<String>,
}

pub const TARGET_KEYS: &[&str] = &["service", "port", "network", "address"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Dns {
    pub zone: String,
    /// Name → IPv4 address, as text until validation.
    #[serde(default)]
    pub names: IndexMap<String, String>,
    #[serde(default)]
    pub backends: Backends,
}

pub const DNS_KEYS: &[&str] = &["zone", "names", "backends"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Backends {
    pub hosts: Option<HostsBackend>,
    pub dnsmasq: Option<DnsmasqBackend>,
    pub powerdns: Option<PowerDnsBackend>,
}

pub const BACKEND_KEYS: &[&str] = &["hosts", "dnsmasq", "powerdns"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HostsBackend {
    #[serde(default = "default_hosts_path")]
    pub path: PathBuf,
}

fn default_hosts_path() -> PathBuf {
    PathBuf::from("/etc/hosts")
}

pub const HOSTS_KEYS: &[&str] = &["path"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsmasqBackend {
    #[serde(default = "default_dnsmasq_dir")]
    pub dir: PathBuf,
    /// File name inside `dir` (default `macula-gitops.conf`).
    pub file: Option<String>,
    /// Command run after the file changed, e.g. `[systemctl, restart, dnsmasq]`.
    pub reload: Option<Vec<String>>,
    /// Alternatively: signal the process in this pidfile (SIGTERM unless `signal` says
    /// otherwise); restarting it is then the job of the operator's supervisor.
    pub pidfile: Option<PathBuf>,
    pub signal: Option<String>,
}

fn default_dnsmasq_dir() -> PathBuf {
    PathBuf::from("/etc/dnsmasq.d")
}

pub const DNSMASQ_KEYS: &[&str] = &["dir", "file", "reload", "pidfile", "signal"];

#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct PowerDnsBackend {
    pub url: String,
    #[serde(default = "default_pdns_server")]
    pub server: String,
    pub api_key: String,
    /// TTL of the records this agent writes (default 60).
    pub ttl: Option<u32>,
}

// The API key must never reach a log line through `{:?}`.
impl std::fmt::Debug for PowerDnsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDnsBackend")
            .field("url", &self.url)
            .field("server", &self.server)
            .field("api_key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn default_pdns_server() -> String {
    "localhost".to_string()
}

pub const POWERDNS_KEYS: &[&str] = &["url", "server", "api_key", "ttl"];

/// Keys supported at the place an unknown key was found (`path` is the unknown key's path).
pub fn supported_keys_at(path: &str) -> &'static [&'static str] {
    let segs: Vec<&str> = path.split('.').collect();
    match segs.as_slice() {
        [_] => TOP_LEVEL_KEYS,
        [l, _] if l.starts_with("loopback[") => LOOPBACK_KEYS,
        [f, "target", _] if f.starts_with("forwards[") => TARGET_KEYS,
        [f, _] if f.starts_with("forwards[") => FORWARD_KEYS,
        ["dns", "backends", "hosts", _] => HOSTS_KEYS,
        ["dns", "backends", "dnsmasq", _] => DNSMASQ_KEYS,
        ["dns", "backends", "powerdns", _] => POWERDNS_KEYS,
        ["dns", "backends", _] => BACKEND_KEYS,
        ["dns", _] => DNS_KEYS,
        _ => &[],
    }
}

/// Read, interpolate and parse `path`. Returns the file when it parsed well enough to be
/// validated (items that failed to parse are left out and reported).
pub fn load(path: &Path, env: &Env) -> (Option<RoutingFile>, Diagnostics) {
    match input::read_text(path, path, &Limits::current()) {
        Ok(text) => parse(path, &text, env),
        Err(e) => {
            let mut diags = Diagnostics::default();
            diags.push(e.to_diagnostic());
            (None, diags)
        }
    }
}

/// `load` on text already in memory (tests, and sources that are not files).
pub fn parse(path: &Path, text: &str, env: &Env) -> (Option<RoutingFile>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let Some((root, source)) =
        input::parse_yaml(path, text, Some(env), &Limits::current(), &mut diags)
    else {
        return (None, diags);
    };
    let map = match root {
        Value::Null => Default::default(),
        Value::Mapping(m) => m,
        _ => {
            diags.error(
                path,
                None,
                "",
                "expected a mapping with loopback, forwards, dns",
            );
            return (None, diags);
        }
    };
    let mut out = RoutingFile {
        file: path.to_path_buf(),
        lines: source.lines.clone(),
        ..Default::default()
    };
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default().to_string();
        match key.as_str() {
            "loopback" => out.loopback = items(&source, "loopback", v, &mut diags),
            "forwards" => out.forwards = items(&source, "forwards", v, &mut diags),
            "dns" => out.dns = deserialize_at(v, "dns", &source, &supported_keys_at, &mut diags),
            _ => diags.error(
                path,
                Some(&source.lines),
                &key,
                unknown_key_message(&key, TOP_LEVEL_KEYS),
            ),
        }
    }
    (Some(out), diags)
}

fn items<T: serde::de::DeserializeOwned>(
    source: &SourceFile,
    key: &str,
    v: Value,
    diags: &mut Diagnostics,
) -> Vec<T> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(seq) => seq
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| {
                deserialize_at(
                    item,
                    &lines::index(key, i),
                    source,
                    &supported_keys_at,
                    diags,
                )
            })
            .collect(),
        _ => {
            diags.error(&source.rel, Some(&source.lines), key, "expected a list");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_listed_with_paths_and_lines() {
        let text = "loopback:\n  - {address: 127.0.0.3, name: p, colour: red}\nforwards:\n  - name: a\n    listen: 127.0.0.3:1/tcp\n    target: {address: 127.0.0.1:2, weight: 3}\ndns:\n  zone: z\n  backends:\n    bind9: {}\nextra: 1\n";
        let (f, d) = parse(Path::new("routing.yaml"), text, &Env::default());
        let d: Vec<String> = d.into_sorted().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [
                "routing.yaml:2: loopback[0].colour: unknown key \"colour\" (supported: address, name)",
                "routing.yaml:6: forwards[0].target.weight: unknown key \"weight\" (supported: service, port, network, address)",
                "routing.yaml:10: dns.backends.bind9: unknown key \"bind9\" (supported: hosts, dnsmasq, powerdns)",
                "routing.yaml:11: extra: unknown key \"extra\" (supported: loopback, forwards, dns)",
            ]
        );
        let f = f.expect("parsed");
        assert_eq!(f.forwards.len(), 1);
        assert_eq!(f.loopback.len(), 1);
    }

    #[test]
    fn interpolates_and_reports_missing_variables() {
        let text = "dns:\n  zone: macula.local\n  backends:\n    powerdns: {url: \"http://127.0.0.1:${PDNS_PORT}\", api_key: \"${PDNS_API_KEY}\"}\n";
        let env = Env::from_pairs([("PDNS_PORT", "8081")]);
        let (f, d) = parse(Path::new("r.yaml"), text, &env);
        let d = d.into_sorted();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "dns.backends.powerdns.api_key");
        assert!(d[0].message.contains("PDNS_API_KEY"));
        let pdns = f.unwrap().dns.unwrap().backends.powerdns.unwrap();
        assert_eq!(pdns.url, "http://127.0.0.1:8081");
        assert_eq!(pdns.server, "localhost");
        assert!(!format!("{pdns:?}").contains("${"));
    }

    #[test]
    fn a_bad_item_does_not_hide_the_others() {
        let text = "forwards:\n  - {name: a, listen: x}\n  - {name: b, listen: 127.0.0.3:1/tcp, target: {address: 127.0.0.1:1}}\n";
        let (f, d) = parse(Path::new("r.yaml"), text, &Env::default());
        let d = d.into_sorted();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].path.as_str(), d[0].line), ("forwards[0]", Some(2)));
        assert_eq!(f.unwrap().forwards[0].name, "b");
    }
}
