//! `desired-state/clusters.yaml`: the kind clusters this repo describes, the local registry
//! they pull from, and how Flux is bootstrapped in each.
//!
//! Loading interpolates `${VAR}`, rejects unknown keys (listing the supported ones) and checks
//! everything that needs only this file and the repo tree; `validate` adds the checks against
//! the host's services and the host's cluster selection.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;
use crate::input::lines::{self, LineIndex};
use crate::input::Env;
use crate::input::{deserialize_at, read_yaml};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ClustersFile {
    /// Where the file came from, for diagnostics found after loading.
    #[serde(skip)]
    pub origin: Origin,
    pub registry: Option<RegistrySpec>,
    #[serde(default)]
    pub flux: FluxSpec,
    #[serde(default)]
    pub clusters: IndexMap<String, ClusterSpec>,
    /// Host services the clusters reach by name on the nodes' network.
    #[serde(default)]
    pub host_services: Vec<HostServiceSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RegistrySpec {
    /// `stack/service` of the registry in the host stacks.
    pub service: String,
    /// How the host (and `docker push`) reaches it, e.g. `localhost:5001`.
    pub host: String,
    /// How nodes reach it over the `kind` network, e.g. `kind-registry:5000`.
    pub cluster: String,
}

/// Flux settings; every key optional so a cluster's own block can override key by key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct FluxSpec {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub install_url: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub sha256: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub git_url: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub branch: Option<String>,
    /// GitRepository interval (default 1m).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub interval: Option<String>,
    /// Kustomization interval (default 10m).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub sync_interval: Option<String>,
    /// Path in the repo Flux reconciles (default `./clusters/<name>`).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub path: Option<String>,
    pub secret_ref: Option<SecretRef>,
    /// Where Flux reads the cluster's directory: `git` (default; the repo at `git_url`) or
    /// `oci` (an artifact the agent packs from the applied revision and pushes to the local
    /// registry on every apply: the local loop, no remote needed).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: PathBuf,
    pub lines: LineIndex,
}

/// Accept any scalar as a string: `version: 2.4` is then reported as a bad version rather
/// than as a type error that hides every other problem in the file.
fn opt_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_yaml::Value>::deserialize(d)?;
    match v {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(serde_yaml::Value::String(s)) => Ok(Some(s)),
        Some(serde_yaml::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(serde_yaml::Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a string")),
    }
}

/// Credentials for a private repo: the agent creates Secret `flux-system/<name>` from the
/// host (never from the file): for http(s) `username`/`password` from the environment
/// variables named here; for ssh `identity` and `known_hosts` from the files whose paths the
/// named variables hold (the host decides which files; the repo only names the variables).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub identity_file_env: Option<String>,
    pub known_hosts_file_env: Option<String>,
}

/// A host-stack service joined to the nodes' network under `alias`: pods resolve the alias
/// through Docker's DNS (kind's node entrypoint makes it reachable from pods), so a cluster
/// reaches the service with no host port and no fixed address.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct HostServiceSpec {
    /// `stack/service` in the host stacks.
    pub service: String,
    pub alias: String,
}

/// A Secret the agent creates in a cluster; `data` maps each key to the host environment
/// variable holding its value (the value is never in the repo).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ClusterSecretSpec {
    pub name: String,
    pub namespace: String,
    pub data: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Node image for every node without its own `image`.
    pub image: Option<String>,
    /// Explicit permission to delete and recreate the cluster when its config changed.
    #[serde(default)]
    pub recreate: bool,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub flux: FluxSpec,
    #[serde(default)]
    pub secrets: Vec<ClusterSecretSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub role: Role,
    pub image: Option<String>,
    #[serde(default)]
    pub extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default)]
    pub protocol: PortProtocol,
    /// Host address to bind (kind's default: all addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
}

#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl std::fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
            PortProtocol::Sctp => "SCTP",
        })
    }
}

/// Flux settings for one cluster with defaults applied and required keys present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FluxResolved {
    pub version: String,
    /// Default: the GitHub release's `install.yaml` of `version`.
    pub install_url: String,
    /// An explicit pin; without one the release's checksums file decides.
    pub sha256: Option<String>,
    pub git_url: String,
    pub branch: String,
    pub interval: String,
    pub sync_interval: String,
    pub path: String,
    pub secret_ref: Option<SecretRef>,
    pub source: FluxSource,
}

/// Where Flux's `flux-system` source reads from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FluxSource {
    /// A GitRepository at `git_url`, as `flux bootstrap` makes it.
    #[default]
    Git,
    /// An OCIRepository following `tag` of an artifact the agent pushes.
    Oci(OciTarget),
}

/// The tag every push moves and the OCIRepository follows; each revision also gets its own.
pub const OCI_MOVING_TAG: &str = "latest";

/// Where a cluster's artifact lives: pushed from the host, pulled by the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciTarget {
    /// The registry as the host reaches it (`registry.host`, e.g. `localhost:5001`).
    pub push_host: String,
    /// Repository in the registry: `clusters/<cluster>`.
    pub repository: String,
    /// The moving tag the OCIRepository follows.
    pub tag: String,
    /// `oci://<registry.cluster>/<repository>`: the registry by its name on the nodes' network.
    pub url: String,
}

pub const FLUX_SOURCES: &[&str] = &["git", "oci"];

pub const TOP_KEYS: &[&str] = &["registry", "flux", "clusters", "host_services"];
pub const HOST_SERVICE_KEYS: &[&str] = &["service", "alias"];
pub const CLUSTER_SECRET_KEYS: &[&str] = &["name", "namespace", "data"];
pub const REGISTRY_KEYS: &[&str] = &["service", "host", "cluster"];
pub const FLUX_KEYS: &[&str] = &[
    "version",
    "install_url",
    "sha256",
    "git_url",
    "branch",
    "interval",
    "sync_interval",
    "path",
    "secret_ref",
    "source",
];
pub const SECRET_KEYS: &[&str] = &[
    "name",
    "username_env",
    "password_env",
    "identity_file_env",
    "known_hosts_file_env",
];
pub const CLUSTER_KEYS: &[&str] = &["image", "recreate", "nodes", "flux", "secrets"];
pub const NODE_KEYS: &[&str] = &["role", "image", "extraPortMappings"];
pub const PORT_KEYS: &[&str] = &["containerPort", "hostPort", "protocol", "listenAddress"];

/// The keys supported where an unknown key was found (`path` is the unknown key's path).
pub fn supported_keys_at(path: &str) -> &'static [&'static str] {
    let segs: Vec<&str> = path.split('.').collect();
    match segs.as_slice() {
        [_] => TOP_KEYS,
        [h, _] if h.starts_with("host_services[") => HOST_SERVICE_KEYS,
        ["clusters", _, s, _] if s.starts_with("secrets[") => CLUSTER_SECRET_KEYS,
        ["registry", _] => REGISTRY_KEYS,
        ["flux", "secret_ref", _] | ["clusters", _, "flux", "secret_ref", _] => SECRET_KEYS,
        ["flux", _] | ["clusters", _, "flux", _] => FLUX_KEYS,
        ["clusters", _, n, m, _]
            if n.starts_with("nodes[") && m.starts_with("extraPortMappings[") =>
        {
            PORT_KEYS
        }
        ["clusters", _, n, _] if n.starts_with("nodes[") => NODE_KEYS,
        ["clusters", _, _] => CLUSTER_KEYS,
        _ => &[],
    }
}

impl ClustersFile {
    /// Effective Flux settings of `name`. `source_url` is the agent's own source URL, the
    /// default `git_url` when it is reachable from inside a cluster. Err = (the `flux` key that
    /// is missing, why).
    pub fn flux_for(
        &self,
        name: &str,
        source_url: Option<&str>,
    ) -> Result<FluxResolved, (&'static str, String)> {
        let own = self
            .clusters
            .get(name)
            .map(|c| c.flux.clone())
            .unwrap_or_default();
        let d = &self.flux;
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let missing = |key: &'static str| {
            (
                key,
                format!(
                    "flux.{key} is not set (neither for the cluster nor in the top-level flux block)"
                ),
            )
        };
        let source = match pick(&own.source, &d.source).as_deref() {
            Some("oci") => {
                let Some(r) = &self.registry else {
                    return Err((
                        "source",
                        "flux.source oci needs the top-level registry block (the agent pushes to registry.host, Flux pulls from registry.cluster)".into(),
                    ));
                };
                let repository = format!("clusters/{name}");
                FluxSource::Oci(OciTarget {
                    push_host: r.host.clone(),
                    url: format!("oci://{}/{repository}", r.cluster),
                    repository,
                    tag: OCI_MOVING_TAG.into(),
                })
            }
            _ => FluxSource::Git,
        };
        let git_url = if source != FluxSource::Git {
            // Only the artifact's `source` annotation names the repo: no URL is required.
            pick(&own.git_url, &d.git_url)
                .or_else(|| source_url.map(|u| crate::redact::without_credentials(u).into_owned()))
                .unwrap_or_default()
        } else {
            match pick(&own.git_url, &d.git_url) {
                Some(u) => u,
                None => match source_url {
                    // The agent's own credentials never go into a cluster object: Flux gets them
                    // from `flux.secret_ref`.
                    Some(u) if reachable_from_cluster(u) => {
                        let u = crate::redact::without_credentials(u);
                        match super::flux::git_url_problem(&u) {
                        None => u.into_owned(),
                        Some(p) => {
                            return Err((
                                "git_url",
                                format!("flux.git_url is not set and the agent's source URL {p}; set flux.git_url"),
                            ))
                        }
                    }
                    }
                    Some(u) => {
                        return Err((
                            "git_url",
                            format!(
                                "flux.git_url is not set and the agent's source URL {} is not reachable from a cluster; set flux.git_url",
                                crate::redact::redact(u)
                            ),
                        ))
                    }
                    None => return Err(missing("git_url")),
                },
            }
        };
        let version = pick(&own.version, &d.version).ok_or_else(|| missing("version"))?;
        Ok(FluxResolved {
            install_url: pick(&own.install_url, &d.install_url)
                .unwrap_or_else(|| super::release::default_install_url(&version)),
            version,
            sha256: pick(&own.sha256, &d.sha256),
            git_url,
            branch: pick(&own.branch, &d.branch).unwrap_or_else(|| "main".into()),
            interval: pick(&own.interval, &d.interval).unwrap_or_else(|| "1m".into()),
            sync_interval: pick(&own.sync_interval, &d.sync_interval)
                .unwrap_or_else(|| "10m".into()),
            path: own
                .path
                .clone()
                .unwrap_or_else(|| format!("./clusters/{name}")),
            // An OCIRepository of the local registry needs no credentials.
            secret_ref: match source {
                FluxSource::Git => own.secret_ref.clone().or_else(|| d.secret_ref.clone()),
                FluxSource::Oci(_) => None,
            },
            source,
        })
    }

    /// Node image of `node` in cluster `name`.
    pub fn node_image(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Option<String> {
        node.image.clone().or_else(|| cluster.image.clone())
    }
}

/// A local path or loopback URL cannot be cloned by source-controller inside a cluster.
pub fn reachable_from_cluster(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like `git@host:path` is remote; a bare path is local.
        return url.contains('@') && url.contains(':');
    };
    if scheme == "file" {
        return false;
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.trim_start_matches('[');
    let host = host.split([']']).next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    !(host.is_empty() || host == "localhost" || host.starts_with("127.") || host == "::1")
}

/// Read, interpolate and parse `path`; check what needs only this file and the repo at
/// `repo_root`. Returns the file when it parsed (even with diagnostics) so the caller can
/// show a diff, and every problem found. Diagnostics name the file relative to its directory
/// (`clusters.yaml`), as the other desired-state files do.
pub fn load(path: &Path, env: &Env, repo_root: &Path) -> (Option<ClustersFile>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let rel = Path::new(path.file_name().unwrap_or(path.as_os_str()));
    let Some((value, source)) = read_yaml(dir, rel, Some(env), &mut diags) else {
        return (None, diags);
    };
    let interpolation_failed = diags.has_errors();
    let parsed = if value.is_null() {
        Some(ClustersFile::default())
    } else {
        deserialize_at::<ClustersFile>(value, "", &source, &supported_keys_at, &mut diags)
    };
    let Some(mut file) = parsed.filter(|_| !interpolation_failed) else {
        return (None, diags);
    };
    file.origin = Origin {
        file: rel.to_path_buf(),
        lines: source.lines.clone(),
    };
    check_file(rel, &source.lines, &file, repo_root, &mut diags);
    (Some(file), diags)
}

fn is_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_sha256(v: &str) -> bool {
    v.len() == 64
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Go duration as Flux takes it: `30s`, `1m`, `1h30m`.
pub fn is_duration(v: &str) -> bool {
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// kind cluster names become container and network name parts and a kubeconfig context.
fn is_cluster_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 50
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && n.as_bytes()[0].is_ascii_alphanumeric()
}

fn check_flux(
    file: &Path,
    idx: &LineIndex,
    prefix: &str,
    f: &FluxSpec,
    repo_root: &Path,
    d: &mut Diagnostics,
) {
    let at = |k: &str| lines::join(prefix, k);
    if let Some(v) = &f.version {
        if !is_version(v) {
            d.error(
                file,
                Some(idx),
                at("version"),
                format!("{v:?} is not a version like v2.4.0"),
            );
        }
    }
    if let Some(v) = &f.sha256 {
        if !is_sha256(v) {
            d.error(
                file,
                Some(idx),
                at("sha256"),
                "must be 64 lowercase hex digits (the sha256 of install.yaml)",
            );
        } else if super::release::is_placeholder(v) {
            d.error(
                file,
                Some(idx),
                at("sha256"),
                "is a placeholder, not the sha256 of a manifest; remove it (the release's checksums file is then used) or pin the value `macula-gitops flux digest <version>` prints",
            );
        }
    }
    if let Some(u) = &f.install_url {
        if !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("file://")) {
            d.error(
                file,
                Some(idx),
                at("install_url"),
                format!("{u:?} must be an https://, http:// or file:// URL"),
            );
        }
    }
    for (k, v) in [
        ("interval", &f.interval),
        ("sync_interval", &f.sync_interval),
    ] {
        if let Some(v) = v {
            if !is_duration(v) {
                d.error(
                    file,
                    Some(idx),
                    at(k),
                    format!("{v:?} is not a duration like 1m or 10m30s"),
                );
            }
        }
    }
    if let Some(p) = f.git_url.as_deref().and_then(super::flux::git_url_problem) {
        d.error(file, Some(idx), at("git_url"), p);
    }
    if let Some(b) = &f.branch {
        if b.is_empty() || b.contains(char::is_whitespace) || b.contains("..") {
            d.error(
                file,
                Some(idx),
                at("branch"),
                format!("{b:?} is not a branch name"),
            );
        }
    }
    if let Some(p) = &f.path {
        if let Err(msg) = check_repo_path(repo_root, p) {
            d.error(file, Some(idx), at("path"), msg);
        }
    }
    if let Some(s) = &f.source {
        if !FLUX_SOURCES.contains(&s.as_str()) {
            d.error(
                file,
                Some(idx),
                at("source"),
                format!("{s:?} is not a Flux source; expected git or oci"),
            );
        } else if s == "oci" && f.secret_ref.is_some() {
            d.error(
                file,
                Some(idx),
                at("secret_ref"),
                "is for a git source; the local registry an oci source reads needs no credentials",
            );
        }
    }
    if let Some(s) = &f.secret_ref {
        if !is_cluster_name(&s.name) {
            d.error(
                file,
                Some(idx),
                at("secret_ref.name"),
                format!("{:?} is not a Secret name", s.name),
            );
        }
    }
}

/// `p` must name an existing directory inside the repo, also after resolving symlinks.
pub fn check_repo_path(repo_root: &Path, p: &str) -> Result<PathBuf, String> {
    let rel = Path::new(p);
    if rel.is_absolute() {
        return Err(format!("{p:?} must be relative to the repo root"));
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{p:?} must not contain `..`"));
    }
    let full = repo_root.join(rel);
    let real = full
        .canonicalize()
        .map_err(|_| format!("{p:?} does not exist in the repo ({})", full.display()))?;
    let root = repo_root
        .canonicalize()
        .map_err(|e| format!("repo root {}: {e}", repo_root.display()))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "{p:?} resolves outside the repo (symlink to {})",
            real.display()
        ));
    }
    if !real.is_dir() {
        return Err(format!("{p:?} is not a directory"));
    }
    Ok(real)
}

fn check_file(
    file: &Path,
    idx: &LineIndex,
    f: &ClustersFile,
    repo_root: &Path,
    d: &mut Diagnostics,
) {
    if let Some(r) = &f.registry {
        if r.service
            .split_once('/')
            .is_none_or(|(a, b)| a.is_empty() || b.is_empty())
        {
            d.error(
                file,
                Some(idx),
                "registry.service",
                format!("{:?} must be stack/service", r.service),
            );
        }
        for (k, v) in [("host", &r.host), ("cluster", &r.cluster)] {
            if split_host_port(v).is_none() {
                d.error(
                    file,
                    Some(idx),
                    format!("registry.{k}"),
                    format!("{v:?} must be host:port"),
                );
            }
        }
    }
    check_flux(file, idx, "flux", &f.flux, repo_root, d);
    let needs_registry = |at: String, d: &mut Diagnostics| {
        d.error(
            file,
            Some(idx),
            at,
            "oci needs the top-level registry block: the agent pushes the artifact to registry.host and Flux pulls it from registry.cluster",
        )
    };
    if f.flux.source.as_deref() == Some("oci") && f.registry.is_none() {
        needs_registry("flux.source".into(), d);
    }
    if f.flux.path.is_some() {
        d.error(
            file,
            Some(idx),
            "flux.path",
            "path is per cluster (default ./clusters/<name>); set it under clusters.<name>.flux",
        );
    }
    for (name, c) in &f.clusters {
        let cp = format!("clusters.{name}");
        if !is_cluster_name(name) {
            d.error(
                file,
                Some(idx),
                cp.clone(),
                "cluster name must be lowercase letters, digits, '-' or '.' (at most 50)",
            );
        }
        if c.nodes.is_empty() {
            d.error(
                file,
                Some(idx),
                format!("{cp}.nodes"),
                "at least one node (role: control-plane) is required",
            );
        } else if !c.nodes.iter().any(|n| n.role == Role::ControlPlane) {
            d.error(
                file,
                Some(idx),
                format!("{cp}.nodes"),
                "needs a node with role: control-plane",
            );
        }
        for (i, n) in c.nodes.iter().enumerate() {
            let np = lines::index(&format!("{cp}.nodes"), i);
            match f.node_image(c, n) {
                None => d.error(
                    file,
                    Some(idx),
                    format!("{np}.image"),
                    format!("no node image (set clusters.{name}.image or this node's image)"),
                ),
                Some(image) if image.is_empty() => d.error(
                    file,
                    Some(idx),
                    format!("{np}.image"),
                    format!("no node image (set clusters.{name}.image or this node's image)"),
                ),
                // kind's release notes: only the digest guarantees an image built for the
                // kind release in use; a tag can be re-pushed.
                Some(image) if image.starts_with("kindest/node:") && !image.contains("@sha256:") => d.warn(
                    file,
                    Some(idx),
                    format!("{np}.image"),
                    format!("{image} is pinned by tag only; use the @sha256: digest kind's release notes list for it"),
                ),
                Some(_) => {}
            }
            for (j, m) in n.extra_port_mappings.iter().enumerate() {
                let mp = lines::index(&format!("{np}.extraPortMappings"), j);
                if m.host_port == 0 || m.container_port == 0 {
                    d.error(file, Some(idx), mp.clone(), "ports must be 1-65535");
                }
                if let Some(a) = &m.listen_address {
                    if a.parse::<std::net::IpAddr>().is_err() {
                        d.error(
                            file,
                            Some(idx),
                            format!("{mp}.listenAddress"),
                            format!("{a:?} is not an IP address"),
                        );
                    }
                }
            }
        }
        check_flux(file, idx, &format!("{cp}.flux"), &c.flux, repo_root, d);
        if c.flux.source.as_deref() == Some("oci") && f.registry.is_none() {
            needs_registry(format!("{cp}.flux.source"), d);
        }
        if c.flux.path.is_none() {
            let default = format!("./clusters/{name}");
            if let Err(msg) = check_repo_path(repo_root, &default) {
                d.error(
                    file,
                    Some(idx),
                    format!("{cp}.flux.path"),
                    format!("default path: {msg}"),
                );
            }
        }
        // git_url may come from the agent's source URL (checked by `validate::resolve`); the
        // rest must be here.
        let required = [("version", &c.flux.version, &f.flux.version)];
        for (key, own, top) in required {
            if own.is_none() && top.is_none() {
                d.error(
                    file,
                    Some(idx),
                    format!("{cp}.flux.{key}"),
                    format!("not set (set flux.{key} at the top or for this cluster)"),
                );
            }
        }
    }
}

/// `localhost:5001` → (`localhost`, 5001).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port: u16 = p.parse().ok()?;
    (!h.is_empty() && port != 0).then_some((h, port))
}
