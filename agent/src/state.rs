//! The agent's own state on disk: last applied revision and inventory, written atomically
//! (temp file + rename) so a crash never leaves a torn file. Also where repo files that
//! services bind-mount are materialised, content-addressed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while it was being applied; the next pass picks up the new content")]
    Changed { path: PathBuf },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// `/var/lib/macula-gitops` as root, the XDG state dir otherwise.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/macula-gitops");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("macula-gitops")
}

/// Write `bytes` to `path` atomically: a reader sees the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state types serialise to JSON");
    write_atomic(path, &bytes)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StateError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What the last apply for a host did, in `<state_dir>/<host>/applied.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Applied {
    pub revision: Option<String>,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub tried: usize,
    pub failed: usize,
    /// `stack/service` → container name of everything the revision wants.
    pub inventory: std::collections::BTreeMap<String, String>,
    /// `stack/service` → replicas wanted, for the services that do not run exactly one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replicas: std::collections::BTreeMap<String, u32>,
}

impl Applied {
    /// How many containers the revision wants for `stack/service` (0: not one of its services).
    pub fn wanted(&self, service: &str) -> u32 {
        match self.replicas.get(service) {
            Some(n) => *n,
            None => u32::from(self.inventory.contains_key(service)),
        }
    }
}

pub fn applied_path(state_dir: &Path, host: &str) -> PathBuf {
    state_dir.join("hosts").join(host).join("applied.json")
}

/// `<state_dir>` with mode 0700 (created if missing, tightened if it exists): snapshots,
/// cache, materialised files and the applied state are the agent's alone.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// The repo file or directory with content `digest`, at `<state_dir>/files/<digest>/<name>`,
/// verified: an existing copy whose content no longer matches (edited, half-deleted) is
/// replaced, a missing one is made. Containers bind the copy read-only: an edit in the repo is
/// a new digest (and a recreate), never a half-written file under a running service.
///
/// Modes: `<state_dir>` and `files/<digest>/` are 0700, so no other host user can read the
/// copies; the copy itself is 0755 (dirs, executables) / 0644 (files), so a container process
/// running as any user can read its configuration — it sees the bind mount's root, never the
/// 0700 parents, which only the engine (root) traverses.
pub fn materialise(state_dir: &Path, digest: &str, source: &Path) -> Result<PathBuf, StateError> {
    let name = source
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "data".into());
    let files = state_dir.join("files");
    let dir = files.join(digest);
    let dest = dir.join(&name);
    let io = |source| StateError::Io {
        path: dest.clone(),
        source,
    };
    if std::fs::symlink_metadata(&dest).is_ok() {
        if crate::desired::paths::digest(&dest).ok().as_deref() == Some(digest) {
            return Ok(dest);
        }
        tracing::warn!(path = %dest.display(), "materialised copy does not match its digest; re-creating it");
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    std::fs::create_dir_all(&files).map_err(io)?;
    let tmp = tempfile::tempdir_in(&files).map_err(io)?;
    copy_tree(source, &tmp.path().join(&name), Modes::Readable).map_err(io)?;
    // The repo changed between load and apply: refuse rather than bind content nobody validated.
    let got = crate::desired::paths::digest(&tmp.path().join(&name)).map_err(io)?;
    if got != digest {
        return Err(StateError::Changed {
            path: source.to_path_buf(),
        });
    }
    match std::fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            // The directory now lives at `dir`; keep TempDir from deleting it.
            let _ = tmp.keep();
            Ok(dest)
        }
        // Another apply materialised the same digest first: same content, use it.
        Err(_) if dest.exists() => Ok(dest),
        Err(e) => Err(io(e)),
    }
}

/// How `copy_tree` sets modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    /// 0755 for directories and executables, 0644 otherwise: readable by any container user.
    Readable,
}

/// Copy a file or tree; symlinks are copied as links, never followed (they were checked to stay
/// inside the repo when the desired state was built).
pub fn copy_tree(from: &Path, to: &Path, modes: Modes) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Modes::Readable = modes;
    let meta = std::fs::metadata(from)?;
    let set = |p: &Path, exec: bool| {
        std::fs::set_permissions(
            p,
            std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
        )
    };
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        set(to, true)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            if e.file_name() == ".git" {
                continue;
            }
            let target = to.join(e.file_name());
            if e.file_type()?.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &target)?;
            } else {
                copy_tree(&e.path(), &target, modes)?;
            }
        }
        Ok(())
    } else {
        std::fs::copy(from, to)?;
        set(to, meta.permissions().mode() & 0o111 != 0)
    }
}

/// Write a generated secret or config to `<state_dir>/files/<digest>/<name>` once; returns that
/// path. The directory is 0700 (only root reaches it on the host); the file gets the mode (and
/// numeric owner) the compose file asks for, since the container reads it through a bind.
pub fn materialise_bytes(
    state_dir: &Path,
    digest: &str,
    name: &str,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, StateError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir.join("files").join(digest);
    let dest = dir.join(name);
    let io = |source| StateError::Io {
        path: dest.clone(),
        source,
    };
    let perms_match =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if dest.exists() && perms_match(&dest) {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    std::fs::write(tmp.path(), content).map_err(io)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(io)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(
            tmp.path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| io(std::io::Error::from(e)))?;
    }
    tmp.persist(&dest).map_err(|e| io(e.error))?;
    Ok(dest)
}
