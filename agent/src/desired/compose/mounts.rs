//! One entry of a service's `volumes:`, short (`SRC:DST[:MODE]`) or long syntax.

use serde::de::Deserializer;
use serde::Deserialize;

use super::{short_or_long, Scalar};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// Named volume, bind source path, or `None` for an anonymous volume or a tmpfs.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub kind: MountKind,
    /// Bind propagation (`rprivate`, `shared`, ...).
    pub propagation: Option<String>,
    /// Whether a missing bind source is created: `Some(true)` for the short syntax (as
    /// compose-go parses it), long syntax `bind.create_host_path` as written (unset: not created).
    pub create_host_path: Option<bool>,
    /// `z` or `Z`: SELinux relabelling of a bind source.
    pub selinux: Option<String>,
    /// Do not copy the image's data into a new volume.
    pub nocopy: bool,
    pub subpath: Option<String>,
    /// tmpfs size: bytes or a size with unit, checked when the spec is built.
    pub tmpfs_size: Option<Scalar>,
    pub tmpfs_mode: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountKind {
    #[default]
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Deserialize)]
struct Long {
    #[serde(rename = "type")]
    kind: String,
    source: Option<String>,
    target: String,
    #[serde(default)]
    read_only: bool,
    /// Docker Desktop only (macOS file sharing); no meaning on a Linux engine.
    #[allow(dead_code)]
    consistency: Option<String>,
    bind: Option<BindOpts>,
    volume: Option<VolumeOpts>,
    tmpfs: Option<TmpfsOpts>,
}

pub const MOUNT_KEYS: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
];

#[derive(Deserialize)]
struct BindOpts {
    propagation: Option<String>,
    create_host_path: Option<bool>,
    selinux: Option<String>,
}

pub const BIND_KEYS: &[&str] = &["propagation", "create_host_path", "selinux"];

#[derive(Deserialize)]
struct VolumeOpts {
    #[serde(default)]
    nocopy: bool,
    subpath: Option<String>,
}

pub const VOLUME_OPT_KEYS: &[&str] = &["nocopy", "subpath"];

#[derive(Deserialize)]
struct TmpfsOpts {
    size: Option<Scalar>,
    #[serde(default, deserialize_with = "super::file_mode")]
    mode: Option<u32>,
}

pub const TMPFS_KEYS: &[&str] = &["size", "mode"];

const PROPAGATIONS: &[&str] = &[
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_long(
            d,
            "\"SOURCE:TARGET[:ro]\" or a mapping with type (volume|bind|tmpfs), source, target, read_only",
            |s| parse_short_mount(&s),
            from_long,
        )
    }
}

fn from_long(l: Long) -> Result<Mount, String> {
    let kind = match l.kind.as_str() {
        "volume" => MountKind::Volume,
        "bind" => MountKind::Bind,
        "tmpfs" => MountKind::Tmpfs,
        other => {
            return Err(format!(
                "unsupported mount type {other:?} (expected volume, bind or tmpfs)"
            ))
        }
    };
    if kind == MountKind::Bind && l.source.as_deref().is_none_or(str::is_empty) {
        return Err("a bind mount needs a source".into());
    }
    let mut m = Mount {
        source: l.source.filter(|s| !s.is_empty()),
        target: l.target,
        read_only: l.read_only,
        kind,
        ..Default::default()
    };
    if let Some(b) = l.bind {
        if let Some(p) = &b.propagation {
            check_propagation(p)?;
        }
        m.propagation = b.propagation;
        m.create_host_path = b.create_host_path;
        m.selinux = b.selinux;
    }
    if let Some(v) = l.volume {
        m.nocopy = v.nocopy;
        m.subpath = v.subpath;
    }
    if let Some(t) = l.tmpfs {
        m.tmpfs_size = t.size;
        m.tmpfs_mode = t.mode;
    }
    Ok(m)
}

fn check_propagation(p: &str) -> Result<(), String> {
    if PROPAGATIONS.contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "unknown bind propagation {p:?} (expected one of {})",
            PROPAGATIONS.join(", ")
        ))
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
    let kind = match source {
        Some(src) if src.starts_with(['.', '/', '~']) => MountKind::Bind,
        _ => MountKind::Volume,
    };
    let mut m = Mount {
        source: source.map(str::to_string),
        target: target.to_string(),
        kind,
        create_host_path: (kind == MountKind::Bind).then_some(true),
        ..Default::default()
    };
    for flag in mode
        .map(|m| m.split(',').collect())
        .unwrap_or_else(Vec::new)
    {
        match flag {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" => m.selinux = Some(flag.to_string()),
            "nocopy" => m.nocopy = true,
            // Docker Desktop file-sharing hints; a Linux engine ignores them.
            "cached" | "delegated" | "consistent" => {}
            p if PROPAGATIONS.contains(&p) => m.propagation = Some(p.to_string()),
            bad => {
                return Err(format!(
                    "unsupported volume mode {bad:?} in {s:?} (expected ro, rw, z, Z, nocopy or a propagation)"
                ))
            }
        }
    }
    Ok(m)
}
