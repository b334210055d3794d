//! Privileges a container may get, granted only by the host: the `policy:` block of the agent's
//! own config file. Whoever can push to the repo must not be able to give a container root on
//! the host, so nothing in the repo grants anything; the default is deny.
//!
//! The check runs on the normalised `ServiceSpec`s, after Compose's keys are parsed, so it does
//! not depend on which syntax asked for the privilege.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desired::spec::{DesiredState, MountSource, ServiceSpec, VolumeSpec};
use crate::diag::Diagnostics;

/// Host paths every service may bind read-only: the clock and zone name carry no secret.
pub const DEFAULT_READ_ONLY: &[&str] = &["/etc/localtime", "/etc/timezone"];
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// `policy:` in the agent config. Every key defaults to "not allowed".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Host paths services may bind, `PATH[:ro|:rw]` (default `:rw`); a path allows its subtree.
    #[serde(default)]
    pub host_paths: Vec<String>,
    /// Binding the Docker socket (root on the host).
    #[serde(default)]
    pub docker_socket: bool,
    #[serde(default)]
    pub privileged: bool,
    /// `network_mode: host`.
    #[serde(default)]
    pub network_host: bool,
    /// `pid: host`.
    #[serde(default)]
    pub pid_host: bool,
    /// `ipc: host`.
    #[serde(default)]
    pub ipc_host: bool,
    /// `uts: host` (the container can set the host's hostname).
    #[serde(default)]
    pub uts_host: bool,
    /// `userns_mode: host` (leaves the daemon's user-namespace remapping: root is host root).
    #[serde(default)]
    pub userns_host: bool,
    /// `cgroup: host` (the host's cgroup namespace).
    #[serde(default)]
    pub cgroup_host: bool,
    /// Device requests: `gpus` and `deploy.resources.reservations.devices` (GPUs and other
    /// driver devices).
    #[serde(default)]
    pub device_requests: bool,
    /// `device_cgroup_rules` entries allowed verbatim (e.g. `c 189:* rmw`).
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    /// Containers outside a service's own stack it may join: `network_mode`/`pid`/`ipc`
    /// `container:<name>` and `volumes_from` (their network, processes, memory or volumes).
    /// Joining a container of the same stack needs no grant.
    #[serde(default)]
    pub join_containers: Vec<String>,
    /// Host devices (`/dev/dri`, a path allows its subtree).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Capabilities for `cap_add` (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL` allows any).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `security_opt` entries allowed verbatim (e.g. `seccomp=unconfined`).
    #[serde(default)]
    pub security_opt: Vec<String>,
}

/// The policy in force and the file it came from (named in every refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub config: PolicyConfig,
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    path: PathBuf,
    writable: bool,
}

impl Policy {
    pub fn new(config: PolicyConfig, file: impl Into<PathBuf>) -> Self {
        Self {
            config,
            file: file.into(),
        }
    }

    /// Problems in the block itself (relative paths, unknown modes), as `policy.…` messages.
    pub fn check_config(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, raw) in self.config.host_paths.iter().enumerate() {
            if let Err(e) = parse_grant(raw) {
                out.push(format!("policy.host_paths[{i}]: {e}"));
            }
        }
        for (i, raw) in self.config.devices.iter().enumerate() {
            if !raw.starts_with("/dev/") {
                out.push(format!(
                    "policy.devices[{i}]: {raw:?} is not a path under /dev/"
                ));
            }
        }
        out
    }

    fn grants(&self) -> Vec<Grant> {
        let mut g: Vec<Grant> = DEFAULT_READ_ONLY
            .iter()
            .map(|p| Grant {
                path: PathBuf::from(p),
                writable: false,
            })
            .collect();
        g.extend(
            self.config
                .host_paths
                .iter()
                .filter_map(|r| parse_grant(r).ok()),
        );
        g
    }

    /// Every refusal, one diagnostic per privilege asked for and not granted, located in the
    /// service's compose file.
    pub fn check(&self, state: &DesiredState) -> Diagnostics {
        let mut d = Diagnostics::default();
        let grants = self.grants();
        for spec in &state.services {
            let Some(src) = state.sources.get(&spec.stack) else {
                continue;
            };
            // Containers of the service's own stack: joining them grants nothing new.
            let own: Vec<&str> = state
                .services
                .iter()
                .filter(|s| s.stack == spec.stack)
                .map(|s| s.container_name.as_str())
                .collect();
            for (at, msg) in self.refusals(spec, &grants, &own) {
                d.error(&src.rel, Some(&src.lines), at, msg);
            }
        }
        for v in state.volumes.values() {
            let Some(src) = state.sources.get(&v.stack) else {
                continue;
            };
            let write = state.services.iter().flat_map(|s| &s.mounts).any(|m| {
                !m.read_only && matches!(&m.source, MountSource::Volume { name } if *name == v.name)
            });
            if let Some(msg) = self.volume_refusal(v, write, &grants) {
                let at = format!("volumes.{}.driver_opts.device", v.key);
                d.error(&src.rel, Some(&src.lines), at, msg);
            }
        }
        d
    }

    /// `policy.devices` holds `dev` or a directory above it.
    fn device_granted(&self, dev: &str) -> bool {
        self.config.devices.iter().any(|g| {
            normalise(Path::new(dev))
                .zip(normalise(Path::new(g)))
                .is_some_and(|(d, g)| d.starts_with(g))
        })
    }

    /// A `local` volume whose `driver_opts` mount a host directory (`o: bind`) or a host block
    /// device gives every container using it that path: the same grant a bind mount needs.
    fn volume_refusal(&self, v: &VolumeSpec, write: bool, grants: &[Grant]) -> Option<String> {
        if v.driver.as_deref().is_some_and(|d| d != "local") {
            return None;
        }
        let opt = |k: &str| v.driver_opts.get(k).map(String::as_str);
        let device = opt("device")?;
        let file = self.file.display();
        let flags: Vec<&str> = opt("o").map(|o| o.split(',').collect()).unwrap_or_default();
        let bind = flags.iter().any(|f| *f == "bind" || *f == "rbind");
        let write = write && !flags.contains(&"ro");
        if bind {
            if !device.starts_with('/') {
                // A relative one is refused where the volume is built (`desired/build`).
                return None;
            }
            if DOCKER_SOCKETS.contains(&device) {
                return (!self.config.docker_socket).then(|| format!("a volume binding the Docker socket {device} gives its containers root on the host; the host's policy does not allow it (set `policy.docker_socket: true` in {file})"));
            }
            let mode = if write { "rw" } else { "ro" };
            return path_refusal(device, write, grants).map(|msg| {
                format!("{msg} (a volume with `o: bind` binds that host path; grant it with `policy.host_paths: [\"{device}:{mode}\"]` — or a parent directory — in {file})")
            });
        }
        (device.starts_with("/dev/") && !self.device_granted(device)).then(|| {
            format!("a volume mounting host device {device} is not allowed by the host's policy (add it to `policy.devices` in {file})")
        })
    }

    fn refusals(
        &self,
        spec: &ServiceSpec,
        grants: &[Grant],
        own: &[&str],
    ) -> Vec<(String, String)> {
        let file = self.file.display();
        let base = format!("services.{}", spec.service);
        let mut out = Vec::new();
        for m in &spec.mounts {
            let MountSource::Host { path } = &m.source else {
                continue;
            };
            let at = if m.at.is_empty() {
                format!("{base}.volumes")
            } else {
                m.at.clone()
            };
            if DOCKER_SOCKETS.contains(&path.as_str()) {
                if !self.config.docker_socket {
                    out.push((at, format!("binding the Docker socket {path} gives the container root on the host; the host's policy does not allow it (set `policy.docker_socket: true` in {file})")));
                }
                continue;
            }
            if let Some(msg) = path_refusal(path, !m.read_only, grants) {
                out.push((
                    at,
                    format!("{msg} (grant it with `policy.host_paths: [\"{path}:{}\"]` — or a parent directory — in {file})", if m.read_only { "ro" } else { "rw" }),
                ));
            }
        }
        let rt = &spec.runtime;
        let mut flag = |on: bool, key: &str, granted: bool, what: &str, at: &str| {
            if on && !granted {
                out.push((
                    format!("{base}.{at}"),
                    format!("{what} is not allowed by the host's policy (set `policy.{key}: true` in {file})"),
                ));
            }
        };
        flag(
            rt.post_start
                .iter()
                .chain(&rt.pre_stop)
                .any(|h| h.privileged),
            "privileged",
            self.config.privileged,
            "a privileged lifecycle hook (root on the host)",
            if rt.post_start.iter().any(|h| h.privileged) {
                "post_start"
            } else {
                "pre_stop"
            },
        );
        let host = |v: &Option<String>| v.as_deref() == Some("host");
        flag(
            rt.privileged,
            "privileged",
            self.config.privileged,
            "`privileged: true` (root on the host)",
            "privileged",
        );
        flag(
            host(&rt.network_mode),
            "network_host",
            self.config.network_host,
            "`network_mode: host`",
            "network_mode",
        );
        flag(
            host(&rt.pid),
            "pid_host",
            self.config.pid_host,
            "`pid: host`",
            "pid",
        );
        flag(
            host(&rt.ipc),
            "ipc_host",
            self.config.ipc_host,
            "`ipc: host`",
            "ipc",
        );
        flag(
            host(&rt.uts),
            "uts_host",
            self.config.uts_host,
            "`uts: host`",
            "uts",
        );
        flag(
            host(&rt.userns_mode),
            "userns_host",
            self.config.userns_host,
            "`userns_mode: host` (root in the container is root on the host)",
            "userns_mode",
        );
        flag(
            host(&rt.cgroup),
            "cgroup_host",
            self.config.cgroup_host,
            "`cgroup: host`",
            "cgroup",
        );
        let mut asked: Vec<&str> = rt.device_requests.iter().map(|d| d.at.as_str()).collect();
        asked.dedup();
        for at in asked {
            let key = at.strip_prefix(&format!("{base}.")).unwrap_or(at);
            flag(
                true,
                "device_requests",
                self.config.device_requests,
                &format!("a device request (`{key}`: GPUs and other host devices)"),
                key,
            );
        }
        for rule in &rt.device_cgroup_rules {
            if !self.config.device_cgroup_rules.contains(rule) {
                out.push((
                    format!("{base}.device_cgroup_rules"),
                    format!("device_cgroup_rules {rule:?} is not allowed by the host's policy (add it to `policy.device_cgroup_rules` in {file})"),
                ));
            }
        }
        let joins = [
            ("network_mode", "its network", rt.network_mode.as_deref()),
            ("pid", "its processes", rt.pid.as_deref()),
            ("ipc", "its shared memory", rt.ipc.as_deref()),
        ];
        let mut join = |at: String, what: &str, name: &str| {
            if !own.contains(&name) && !self.config.join_containers.iter().any(|c| c == name) {
                out.push((
                    at,
                    format!("joining container {name} ({what}) is not allowed by the host's policy: it is not a service of stack {} (add it to `policy.join_containers` in {file})", spec.stack),
                ));
            }
        };
        for (key, what, mode) in joins {
            if let Some(name) = mode.and_then(|m| m.strip_prefix("container:")) {
                join(format!("{base}.{key}"), what, name);
            }
        }
        for (i, v) in rt.volumes_from.iter().enumerate() {
            let name = match v.rsplit_once(':') {
                Some((n, "ro" | "rw")) => n,
                _ => v.as_str(),
            };
            join(
                crate::input::lines::index(&format!("{base}.volumes_from"), i),
                "its volumes",
                name,
            );
        }
        for dev in &rt.devices {
            if !self.device_granted(&dev.host) {
                out.push((
                    format!("{base}.devices"),
                    format!("host device {} is not allowed by the host's policy (add it to `policy.devices` in {file})", dev.host),
                ));
            }
        }
        for opt in &rt.security_opt {
            // `no-new-privileges` only takes privileges away.
            let harmless = opt.starts_with("no-new-privileges") && !opt.ends_with("false");
            if !harmless && !self.config.security_opt.contains(opt) {
                out.push((
                    format!("{base}.security_opt"),
                    format!("security_opt {opt:?} is not allowed by the host's policy (add it to `policy.security_opt` in {file})"),
                ));
            }
        }
        for cap in &spec.cap_add {
            let want = normal_cap(cap);
            let ok = self
                .config
                .cap_add
                .iter()
                .map(|c| normal_cap(c))
                .any(|c| c == "ALL" || c == want);
            if !ok {
                out.push((
                    format!("{base}.cap_add"),
                    format!("capability {want} is not allowed by the host's policy (add it to `policy.cap_add` in {file})"),
                ));
            }
        }
        out
    }
}

fn normal_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

fn parse_grant(raw: &str) -> Result<Grant, String> {
    let (path, mode) = match raw.rsplit_once(':') {
        Some((p, m)) if m == "ro" || m == "rw" => (p, m),
        Some((_, m)) if !m.contains('/') => {
            return Err(format!("{raw:?}: mode {m:?} is neither ro nor rw"))
        }
        _ => (raw, "rw"),
    };
    if !path.starts_with('/') {
        return Err(format!("{raw:?} is not an absolute path"));
    }
    let path =
        normalise(Path::new(path)).ok_or_else(|| format!("{raw:?} leaves / through '..'"))?;
    Ok(Grant {
        path,
        writable: mode == "rw",
    })
}

/// Lexical normalisation of an absolute path (`.` dropped, `..` applied); `None` above `/`.
pub fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// Why binding `path` (read-write when `write`) is refused, or `None` when a grant covers it.
/// When a writable grant covers the path and the path exists here, its real location (links
/// resolved) must be granted too: a container with write access there could have planted a
/// link out of it. Links under read-only grants (`/etc/localtime`) are the host admin's.
fn path_refusal(path: &str, write: bool, grants: &[Grant]) -> Option<String> {
    let Some(lexical) = normalise(Path::new(path)) else {
        return Some(format!("host path {path} leaves / through '..'"));
    };
    let judge = |p: &Path, shown: String| -> Result<bool, String> {
        let covering: Vec<&Grant> = grants.iter().filter(|g| p.starts_with(&g.path)).collect();
        if covering.is_empty() {
            return Err(format!("{shown} is not allowed by the host's policy"));
        }
        if write && !covering.iter().any(|g| g.writable) {
            return Err(format!(
                "{shown} is allowed read-only by the host's policy; bind it with `:ro`"
            ));
        }
        Ok(covering.iter().any(|g| g.writable))
    };
    let under_writable = match judge(&lexical, format!("host path {path}")) {
        Ok(w) => w,
        Err(e) => return Some(e),
    };
    if under_writable {
        if let Ok(real) = std::fs::canonicalize(&lexical) {
            if real != lexical {
                let shown = format!("host path {path} (really {})", real.display());
                if let Err(e) = judge(&real, shown) {
                    return Some(e);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> Vec<Grant> {
        Policy::new(
            PolicyConfig {
                host_paths: list.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            "/etc/macula-gitops/agent.yaml",
        )
        .grants()
    }

    #[test]
    fn subtree_and_mode_rules() {
        let g = grants(&["/srv/media:rw", "/etc/ssl/certs:ro"]);
        assert_eq!(path_refusal("/srv/media/films", true, &g), None);
        assert_eq!(path_refusal("/srv/media", false, &g), None);
        assert_eq!(path_refusal("/etc/ssl/certs", false, &g), None);
        assert!(path_refusal("/etc/ssl/certs", true, &g)
            .expect("read-only grant refuses rw")
            .contains("read-only"));
        assert!(path_refusal("/srv/mediax", false, &g).is_some());
        assert!(path_refusal("/srv/media/../../etc", false, &g).is_some());
        assert_eq!(path_refusal("/etc/localtime", false, &g), None);
        assert!(path_refusal("/etc/localtime", true, &g).is_some());
    }

    #[test]
    fn a_link_inside_a_granted_dir_is_judged_by_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let granted = dir.path().join("granted");
        std::fs::create_dir(&granted).expect("mkdir");
        std::os::unix::fs::symlink("/etc", granted.join("out")).expect("symlink");
        let g = grants(&[&format!("{}:rw", granted.display())]);
        let link = format!("{}/out", granted.display());
        let msg = path_refusal(&link, false, &g).expect("link out of the grant is refused");
        assert!(msg.contains("really /etc"), "{msg}");
    }

    #[test]
    fn config_problems_are_named() {
        let p = Policy::new(
            PolicyConfig {
                host_paths: vec!["srv".into(), "/x:rx".into(), "/ok:ro".into()],
                devices: vec!["/tmp/x".into()],
                ..Default::default()
            },
            "agent.yaml",
        );
        let errs = p.check_config();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("policy.host_paths[0]"));
    }

    #[test]
    fn caps_normalise() {
        assert_eq!(normal_cap("cap_net_admin"), "NET_ADMIN");
        assert_eq!(normal_cap("NET_ADMIN"), "NET_ADMIN");
    }
}
