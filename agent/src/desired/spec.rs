//! The normalised desired state the planner compares against the engine: every default
//! applied, every name fully qualified, every repo file a service reads reduced to a digest.
//!
//! A service's spec is hashed (sha256 of its canonical JSON) into a container label; a
//! per-field digest label lets `plan` say *which* field changed when it recreates.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::compose::{Condition, Protocol};
use super::hosts::HostSelection;
use super::load::SourceFile;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    pub subnet: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// Everything else `docker compose` passes to NetworkCreate.
    #[serde(flatten)]
    pub options: NetworkOptions,
    #[serde(skip)]
    pub stack: String,
    /// The compose project and the key the file defines the network under (compose's labels).
    #[serde(skip)]
    pub project: String,
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip)]
    pub stack: String,
    /// The compose project and the key the file defines the volume under (compose's labels).
    #[serde(skip)]
    pub project: String,
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Empty: all addresses.
    pub host_ip: String,
    pub host_port: Option<u16>,
    /// End of a host port range the engine picks a free port from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSource {
    /// A named volume (full Docker name).
    Volume { name: String },
    /// A read-only file or directory from the repo, by repo-relative path and content digest;
    /// apply materialises it content-addressed so a running container never sees a half-written
    /// file, and git stays the truth for configuration.
    Repo {
        path: String,
        digest: String,
        #[serde(skip)]
        local: PathBuf,
    },
    /// A read-write relative bind: the stack's persistent data directory
    /// `<data_root>/<stack>/<path>` (`path` relative to the stack directory). Seeded once from
    /// the repo when `seed` is set; the repo's later content never overwrites it, so the seed is
    /// not part of the spec hash.
    Data {
        path: String,
        #[serde(skip)]
        seed: Option<PathBuf>,
    },
    /// An absolute (or `~/`) host path; allowed only by the host's policy (`crate::policy`).
    Host { path: String },
    /// An anonymous volume.
    Anonymous,
    /// A tmpfs (options in `MountSpec::options`).
    Tmpfs,
    /// A secret or config given inline or from the environment, written by apply into the
    /// state directory under its digest. The content never leaves memory except into that file.
    Generated {
        name: String,
        digest: String,
        #[serde(skip)]
        content: Sensitive,
    },
}

/// Bytes that must not show up in logs, status or errors: `Debug` prints only the length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive(pub Vec<u8>);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
    #[serde(flatten)]
    pub options: MountOptions,
    /// Where the mount is written in the compose file (`services.web.volumes[2]`), for diagnostics.
    #[serde(skip)]
    pub at: String,
}

/// Per-type mount options; each left out of the hash when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MountOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Owner and mode of a generated secret/config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_owner: Option<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttachSpec {
    pub ipv4_address: Option<IpAddr>,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw_priority: Option<i64>,
    /// Connection order only (highest first), not a property of the endpoint.
    #[serde(skip)]
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSpec {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<u32>,
    pub start_period_ns: Option<i64>,
    pub start_interval_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildSpec {
    #[serde(skip)]
    pub context: PathBuf,
    pub context_rel: String,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    /// Digest of the build context: a changed source yields a rebuild and a recreate.
    pub context_digest: String,
    #[serde(flatten)]
    pub options: BuildOptions,
}

/// Long-form `build:` options passed to the engine's build API; unset ones stay out of the hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// Where the inline Dockerfile goes in the context tar; a name no real context uses.
pub const INLINE_DOCKERFILE: &str = ".macula-gitops.Dockerfile";

/// Everything that defines one container. Field order here is the order reasons are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    #[serde(skip)]
    pub stack: String,
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub project: String,
    #[serde(skip)]
    pub depends_on: IndexMap<String, Condition>,
    /// The compose file the service comes from, for compose's `project.config_files` label.
    #[serde(skip)]
    pub compose_file: PathBuf,
    pub container_name: String,
    pub image: String,
    pub build: Option<BuildSpec>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub env_files: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    /// `expose:` container ports (not published on the host). Left out of the hash when empty,
    /// so services without it keep the hash they had before the field existed.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub expose: BTreeSet<(u16, Protocol)>,
    pub mounts: Vec<MountSpec>,
    pub networks: BTreeMap<String, AttachSpec>,
    pub healthcheck: Option<HealthSpec>,
    pub restart: String,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub cap_add: BTreeSet<String>,
    pub extra_hosts: BTreeMap<String, String>,
    /// Every other container setting, each left out of the hash when unset so services that
    /// do not use it keep the hash they had before it existed.
    #[serde(flatten)]
    pub runtime: RuntimeSpec,
    /// When to pull; it does not change the container, so it is not hashed.
    #[serde(skip)]
    pub pull_policy: PullPolicy,
    /// `deploy.replicas` / `scale`: how many containers run (`replica(n)`). Not hashed, so
    /// scaling never recreates the containers that stay.
    #[serde(skip)]
    pub replicas: u32,
    /// Which container this spec is for, 1-based (compose's `container-number` label).
    #[serde(skip)]
    pub number: u32,
    /// `x-macula.rollout_timeout` (`crate::rollout`); not in the hash: changing how long a
    /// rollout watches never recreates the container.
    #[serde(skip)]
    pub rollout_timeout: Option<std::time::Duration>,
}

/// `pull_policy`, as Compose reads it (`if_not_present` = `missing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    #[default]
    Missing,
    Always,
    Never,
    Build,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSpec {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSpec {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRequestSpec {
    pub driver: Option<String>,
    pub count: Option<i64>,
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    pub options: BTreeMap<String, String>,
    /// The key that asked for it (`services.web.gpus`), for diagnostics.
    #[serde(skip)]
    pub at: String,
}

/// A lifecycle hook as the engine's exec runs it: `environment` as `KEY=value` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookSpec {
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
}

macro_rules! runtime_spec {
    ($($(#[$doc:meta])* $name:ident : $ty:ty = $skip:expr,)*) => {
        /// Container settings beyond the first subset, mapped as `docker compose` maps them.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct RuntimeSpec {
            $($(#[$doc])* #[serde(skip_serializing_if = $skip)] pub $name: $ty,)*
        }
    };
}

runtime_spec! {
    platform: Option<String> = "Option::is_none",
    /// Run in the container after each start this agent makes (`post_start`), and before it
    /// stops or removes it (`pre_stop`), as `docker compose` runs them.
    post_start: Vec<HookSpec> = "Vec::is_empty",
    pre_stop: Vec<HookSpec> = "Vec::is_empty",
    stop_signal: Option<String> = "Option::is_none",
    /// Seconds, as Compose truncates `stop_grace_period`.
    stop_timeout: Option<i64> = "Option::is_none",
    shm_size: Option<i64> = "Option::is_none",
    runtime: Option<String> = "Option::is_none",
    /// (name, soft, hard), in file order as compose passes them.
    ulimits: Vec<(String, i64, i64)> = "Vec::is_empty",
    sysctls: BTreeMap<String, String> = "BTreeMap::is_empty",
    tmpfs: BTreeMap<String, String> = "BTreeMap::is_empty",
    devices: Vec<DeviceSpec> = "Vec::is_empty",
    device_cgroup_rules: Vec<String> = "Vec::is_empty",
    device_requests: Vec<DeviceRequestSpec> = "Vec::is_empty",
    privileged: bool = "std::ops::Not::not",
    /// In file order, as compose passes them.
    cap_drop: Vec<String> = "Vec::is_empty",
    security_opt: Vec<String> = "Vec::is_empty",
    read_only: bool = "std::ops::Not::not",
    init: Option<bool> = "Option::is_none",
    logging: Option<LogSpec> = "Option::is_none",
    /// host, none, bridge, or `container:<name>` (a `service:` reference resolved).
    network_mode: Option<String> = "Option::is_none",
    pid: Option<String> = "Option::is_none",
    ipc: Option<String> = "Option::is_none",
    uts: Option<String> = "Option::is_none",
    userns_mode: Option<String> = "Option::is_none",
    cgroup: Option<String> = "Option::is_none",
    cgroup_parent: Option<String> = "Option::is_none",
    dns: Vec<String> = "Vec::is_empty",
    dns_search: Vec<String> = "Vec::is_empty",
    dns_opt: Vec<String> = "Vec::is_empty",
    domainname: Option<String> = "Option::is_none",
    mac_address: Option<String> = "Option::is_none",
    group_add: Vec<String> = "Vec::is_empty",
    stdin_open: bool = "std::ops::Not::not",
    tty: bool = "std::ops::Not::not",
    /// `container:alias`, with service references resolved to container names.
    links: Vec<String> = "Vec::is_empty",
    volumes_from: Vec<String> = "Vec::is_empty",
    /// Addresses beyond the first for a host in `extra_hosts`.
    extra_hosts_more: Vec<(String, String)> = "Vec::is_empty",
    /// `host:ip` in file order, as compose passes them, when that is not the order of
    /// `extra_hosts` then `extra_hosts_more` (left out otherwise, so the hash of a service
    /// whose hosts are already in that order does not change).
    extra_hosts_order: Vec<String> = "Vec::is_empty",
    nano_cpus: Option<i64> = "Option::is_none",
    cpu_shares: Option<i64> = "Option::is_none",
    cpu_quota: Option<i64> = "Option::is_none",
    cpu_period: Option<i64> = "Option::is_none",
    cpu_rt_runtime: Option<i64> = "Option::is_none",
    cpu_rt_period: Option<i64> = "Option::is_none",
    cpu_count: Option<i64> = "Option::is_none",
    cpu_percent: Option<i64> = "Option::is_none",
    cpuset: Option<String> = "Option::is_none",
    memory: Option<i64> = "Option::is_none",
    memory_reservation: Option<i64> = "Option::is_none",
    memory_swap: Option<i64> = "Option::is_none",
    mem_swappiness: Option<i64> = "Option::is_none",
    pids_limit: Option<i64> = "Option::is_none",
    oom_kill_disable: Option<bool> = "Option::is_none",
    oom_score_adj: Option<i64> = "Option::is_none",
    storage_opt: BTreeMap<String, String> = "BTreeMap::is_empty",
    annotations: BTreeMap<String, String> = "BTreeMap::is_empty",
}

/// Network options beyond driver, first subnet and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkOptions {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv4: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam_driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ipam_options: BTreeMap<String, String>,
    /// Every `ipam.config` entry, the first included (`subnet`/`gateway` above repeat it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipam_config: Vec<IpamConfigSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpamConfigSpec {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
}

impl ServiceSpec {
    /// `stack/service`, the identity used in plans, labels and reports.
    pub fn key(&self) -> String {
        format!("{}/{}", self.stack, self.service)
    }

    /// The spec of container `n` of the service, named as compose names replicas:
    /// `<project>-<service>-<n>`. Container 1 is the spec itself (its `container_name`), so a
    /// service that never scaled keeps its name and hash.
    pub fn replica(&self, n: u32) -> std::borrow::Cow<'_, ServiceSpec> {
        if n == self.number {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        r.container_name = format!("{}-{}-{n}", self.project, self.service);
        r.number = n;
        std::borrow::Cow::Owned(r)
    }

    /// The replica whose container is called `name`, if the service runs one by that name.
    pub fn replica_named(&self, name: &str) -> Option<std::borrow::Cow<'_, ServiceSpec>> {
        if name == self.container_name {
            return Some(std::borrow::Cow::Borrowed(self));
        }
        let n: u32 = name
            .strip_prefix(&format!("{}-{}-", self.project, self.service))?
            .parse()
            .ok()?;
        (2..=self.replicas).contains(&n).then(|| self.replica(n))
    }

    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            // A struct with only serialisable fields always becomes an object.
            _ => unreachable!("ServiceSpec serialises to a JSON object"),
        }
    }

    /// sha256 over the canonical JSON of the spec.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(
            serde_json::Value::Object(self.json()).to_string(),
        ))
    }

    /// Short digest per field; repo files get one entry each (`file:<path>`), so a reason
    /// can name the file that changed.
    pub fn field_hashes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in self.json() {
            out.insert(k, short(&v.to_string()));
        }
        for m in &self.mounts {
            match &m.source {
                MountSource::Repo { path, digest, .. } => {
                    out.insert(
                        format!("file:{path}"),
                        digest[..12.min(digest.len())].to_string(),
                    );
                }
                MountSource::Generated { name, digest, .. } => {
                    out.insert(
                        format!("file:{name}"),
                        digest[..12.min(digest.len())].to_string(),
                    );
                }
                _ => {}
            }
        }
        for (path, digest) in &self.env_files {
            out.insert(
                format!("file:{path}"),
                digest[..12.min(digest.len())].to_string(),
            );
        }
        out
    }
}

fn short(s: &str) -> String {
    hex::encode(&Sha256::digest(s)[..6])
}

/// What the repo says this host runs.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub root: PathBuf,
    pub selection: HostSelection,
    /// Networks this agent creates (not `external`), by full name.
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Networks that must already exist.
    pub external_networks: BTreeSet<String>,
    /// Volumes this agent creates, by full name.
    pub volumes: BTreeMap<String, VolumeSpec>,
    pub services: Vec<ServiceSpec>,
    /// Parsed files by stack, for diagnostics.
    pub sources: BTreeMap<String, SourceFile>,
    /// What loading noted without refusing (printed by `validate`, logged by `apply`).
    pub warnings: Vec<crate::diag::Diagnostic>,
}

impl DesiredState {
    pub fn host(&self) -> &str {
        &self.selection.host
    }

    pub fn service(&self, key: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.key() == key)
    }
}
