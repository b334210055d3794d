//! One entry under `services:`.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::build::deserialize_build;
use super::files::deserialize_refs;
use super::{
    short_or_long, Build, CommandLine, Deploy, FileRef, Gpus, KeyValues, Mount, OneOrMany,
    PortEntry, Scalar, ServiceNetworks, StrOrList,
};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    #[serde(default, deserialize_with = "deserialize_build")]
    pub build: Option<Build>,
    pub container_name: Option<String>,
    pub command: Option<CommandLine>,
    pub entrypoint: Option<CommandLine>,
    #[serde(default)]
    pub environment: KeyValues,
    pub env_file: Option<EnvFiles>,
    #[serde(default)]
    pub ports: Vec<PortEntry>,
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
    /// Files of `KEY=value` labels (compose 2.32+); `labels:` wins over them.
    pub label_file: Option<OneOrMany>,
    pub user: Option<Scalar>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub extra_hosts: ExtraHosts,
    /// Container ports reachable on the service's networks without publishing them
    /// (`"9090"`, `9090`, `"4433/udp"`): what routing forwards may target.
    #[serde(default)]
    pub expose: Vec<Scalar>,
    pub platform: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Scalar>,
    pub shm_size: Option<Scalar>,
    pub runtime: Option<String>,
    #[serde(default)]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(default)]
    pub sysctls: KeyValues,
    pub tmpfs: Option<OneOrMany>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default)]
    pub gpus: Gpus,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub security_opt: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    pub init: Option<bool>,
    pub logging: Option<Logging>,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub userns_mode: Option<String>,
    pub cgroup: Option<String>,
    pub cgroup_parent: Option<String>,
    pub dns: Option<OneOrMany>,
    pub dns_search: Option<OneOrMany>,
    #[serde(default)]
    pub dns_opt: Vec<String>,
    pub mac_address: Option<String>,
    #[serde(default)]
    pub group_add: Vec<Scalar>,
    pub pull_policy: Option<String>,
    #[serde(default)]
    pub stdin_open: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub external_links: Vec<String>,
    #[serde(default)]
    pub volumes_from: Vec<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub cpus: Option<Scalar>,
    pub cpu_shares: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_rt_runtime: Option<Scalar>,
    pub cpu_rt_period: Option<Scalar>,
    pub cpu_count: Option<i64>,
    pub cpu_percent: Option<i64>,
    pub cpuset: Option<String>,
    pub mem_limit: Option<Scalar>,
    pub mem_reservation: Option<Scalar>,
    pub memswap_limit: Option<Scalar>,
    pub mem_swappiness: Option<i64>,
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub oom_score_adj: Option<i64>,
    #[serde(default)]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: KeyValues,
    pub deploy: Option<Deploy>,
    pub scale: Option<u32>,
    #[serde(default, deserialize_with = "deserialize_refs")]
    pub secrets: Vec<FileRef>,
    #[serde(default, deserialize_with = "deserialize_refs")]
    pub configs: Vec<FileRef>,
    #[serde(default, deserialize_with = "read_extends")]
    pub extends: Option<Extends>,
    /// Accepted and ignored: `docker compose watch` and attach are interactive features.
    pub develop: Option<serde_yaml::Value>,
    pub attach: Option<bool>,
    /// compose 2.35+: the Docker API socket bound into the container (`policy.docker_socket`).
    #[serde(default)]
    pub use_api_socket: bool,
    /// Lifecycle hooks: commands run in the container once it has started, and before it is
    /// stopped.
    #[serde(default)]
    pub post_start: Vec<Hook>,
    #[serde(default)]
    pub pre_stop: Vec<Hook>,
    /// Agent-specific settings, in an extension key so Compose still loads the file.
    #[serde(rename = "x-macula", default)]
    pub x_macula: XMacula,
}

/// One `post_start`/`pre_stop` entry (Compose Specification, lifecycle hooks).
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub command: CommandLine,
    pub user: Option<Scalar>,
    #[serde(default)]
    pub privileged: bool,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: KeyValues,
}

pub const HOOK_KEYS: &[&str] = &[
    "command",
    "user",
    "privileged",
    "working_dir",
    "environment",
];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct XMacula {
    /// Binding the Docker socket hands the container root on the host: it must be asked for.
    #[serde(default)]
    pub allow_docker_socket: bool,
    /// How long a rollout watches this service after a change (`crate::rollout`): a setting,
    /// not a privilege, so the repo may choose it.
    pub rollout_timeout: Option<String>,
}

/// `env_file:` entry: a path, or `{path, required, format}` (Compose Specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<EnvFile>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Long {
            path: String,
            #[serde(default = "yes")]
            required: bool,
            #[allow(dead_code)]
            format: Option<String>,
        }
        struct Item(EnvFile);
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                short_or_long(
                    d,
                    "a path or a mapping with path, required, format",
                    |path| {
                        Ok(Item(EnvFile {
                            path,
                            required: true,
                        }))
                    },
                    |l: Long| {
                        Ok(Item(EnvFile {
                            path: l.path,
                            required: l.required,
                        }))
                    },
                )
            }
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<Item>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(path)) => Ok(EnvFiles(vec![EnvFile {
                path,
                required: true,
            }])),
            Ok(Raw::Many(v)) => Ok(EnvFiles(v.into_iter().map(|i| i.0).collect())),
            Err(_) => Err(de::Error::custom(
                "expected a path, or a list of paths or {path, required} mappings",
            )),
        }
    }
}

fn yes() -> bool {
    true
}

/// `ulimits: {nofile: 1024}` or `{nofile: {soft: 1024, hard: 2048}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            soft: i64,
            hard: i64,
        }
        short_or_long(
            d,
            "a number or a mapping with soft and hard",
            |s| {
                s.parse::<i64>()
                    .map(|n| Ulimit { soft: n, hard: n })
                    .map_err(|_| {
                        format!("{s:?} is not a number (expected N or {{soft: N, hard: M}})")
                    })
            },
            |l: Long| {
                Ok(Ulimit {
                    soft: l.soft,
                    hard: l.hard,
                })
            },
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Logging {
    pub driver: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, Scalar>,
}

pub const LOGGING_KEYS: &[&str] = &["driver", "options"];

/// `devices:` entry: `/dev/x[:/dev/y[:rwm]]` or `{source, target, permissions}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub source: String,
    pub target: String,
    pub permissions: String,
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Long {
            source: String,
            target: Option<String>,
            permissions: Option<String>,
        }
        short_or_long(
            d,
            "\"HOST[:CONTAINER[:PERMISSIONS]]\" or a mapping with source, target, permissions",
            |s| {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, perms) = match parts.as_slice() {
                    [a] => (*a, *a, "rwm"),
                    [a, b] if is_cgroup_perms(b) => (*a, *a, *b),
                    [a, b] => (*a, *b, "rwm"),
                    [a, b, c] => (*a, *b, *c),
                    _ => return Err(format!("cannot parse device {s:?}")),
                };
                if !is_cgroup_perms(perms) {
                    return Err(format!(
                        "device permissions {perms:?} must be a combination of r, w, m"
                    ));
                }
                Ok(Device {
                    source: source.into(),
                    target: target.into(),
                    permissions: perms.into(),
                })
            },
            |l: Long| {
                Ok(Device {
                    target: l.target.unwrap_or_else(|| l.source.clone()),
                    source: l.source,
                    permissions: l.permissions.unwrap_or_else(|| "rwm".into()),
                })
            },
        )
    }
}

fn is_cgroup_perms(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

/// `extends: other` or `extends: {service: other, file: common.yaml}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Extends {
    pub service: String,
    pub file: Option<String>,
}

impl Extends {
    pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            "a service name or a mapping with service and file",
            |service| {
                Ok(Extends {
                    service,
                    file: None,
                })
            },
            |e: Extends| Ok(e),
        )
    }
}

fn read_extends<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Extends>, D::Error> {
    Extends::read(d).map(Some)
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
        match StrOrList::read(d)? {
            StrOrList::One(s) if s == "NONE" => Ok(HealthTest(vec![s])),
            StrOrList::One(s) => Ok(HealthTest(vec!["CMD-SHELL".into(), s])),
            StrOrList::Many(v) => Ok(HealthTest(v)),
        }
    }
}

/// `extra_hosts: ["host:ip"]` / `["host=ip"]` or a mapping (a host may list several addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraHosts(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Map(IndexMap<String, OneOrMany>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Map(m)) => Ok(ExtraHosts(
                m.into_iter()
                    .flat_map(|(h, ips)| ips.0.into_iter().map(move |ip| (h.clone(), ip)))
                    .collect(),
            )),
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
