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
    #[serde(skip)]
    pub stack: String,
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub stack: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Empty: all addresses.
    pub host_ip: String,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSource {
    /// A named volume (full Docker name).
    Volume { name: String },
    /// A file or directory from the repo, by repo-relative path and content digest; apply
    /// materialises it content-addressed so a running container never sees a half-written file.
    Repo {
        path: String,
        digest: String,
        #[serde(skip)]
        local: PathBuf,
    },
    /// A host path allowed explicitly (only the Docker socket, with `x-macula.allow_docker_socket`).
    Host { path: String },
    /// An anonymous volume.
    Anonymous,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttachSpec {
    pub ipv4_address: Option<IpAddr>,
    pub aliases: Vec<String>,
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
}

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
}

impl ServiceSpec {
    /// `stack/service`, the identity used in plans, labels and reports.
    pub fn key(&self) -> String {
        format!("{}/{}", self.stack, self.service)
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
            if let MountSource::Repo { path, digest, .. } = &m.source {
                out.insert(
                    format!("file:{path}"),
                    digest[..12.min(digest.len())].to_string(),
                );
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
