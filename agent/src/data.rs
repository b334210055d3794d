//! The stacks' persistent data directories: where a read-write relative bind (`./data:/data`)
//! points. `<data_root>/<stack>/<path>`, created when missing (as Compose creates a missing
//! bind directory), seeded once from the repo when the repo has that path, and from then on the
//! container's alone: a later revision never overwrites it, prune never removes it. Only
//! `macula-gitops data rm` does.
//!
//! The data root is not inside the state dir: the state dir holds what the agent can rebuild
//! (snapshots, cache, materialised copies), so deleting it must never delete what containers wrote.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desired::spec::{DesiredState, MountSource};
use crate::state::{copy_tree, Modes};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path:?} is not a data path: it must be relative, without `..`")]
    BadPath { path: String },
    #[error("no data directory {path}")]
    Missing { path: PathBuf },
}

/// `/var/lib/macula-gitops-data` as root, `$XDG_DATA_HOME/macula-gitops` (or
/// `~/.local/share/macula-gitops`) otherwise.
pub fn default_data_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/macula-gitops-data");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("macula-gitops")
}

fn checked(rel: &str) -> Result<PathBuf, DataError> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(DataError::BadPath { path: rel.into() });
    }
    Ok(p.to_path_buf())
}

/// Where a read-write bind of the whole stack directory (`.:/app`) keeps its data.
pub const WHOLE_STACK: &str = ".stack-dir";

/// `<root>/<stack>/<path>` (`.` → `<root>/<stack>/.stack-dir`).
pub fn dir_of(root: &Path, stack: &str, path: &str) -> Result<PathBuf, DataError> {
    let rel = if Path::new(path).components().all(|c| c == Component::CurDir) {
        PathBuf::from(WHOLE_STACK)
    } else {
        checked(path)?
    };
    Ok(root.join(checked(stack)?).join(rel))
}

/// One data directory a desired service binds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDir {
    pub stack: String,
    pub path: String,
    pub dir: PathBuf,
    /// Repo content that seeds it when it is created.
    #[serde(default)]
    pub seed: Option<PathBuf>,
    #[serde(default)]
    pub exists: bool,
}

/// Every data directory the desired state binds, with whether it exists on this host.
pub fn desired_dirs(root: &Path, state: &DesiredState) -> Vec<DataDir> {
    let mut out: Vec<DataDir> = Vec::new();
    for s in &state.services {
        for m in &s.mounts {
            let MountSource::Data { path, seed } = &m.source else {
                continue;
            };
            let Ok(dir) = dir_of(root, &s.stack, path) else {
                continue;
            };
            if out.iter().any(|d| d.dir == dir) {
                continue;
            }
            out.push(DataDir {
                stack: s.stack.clone(),
                path: path.clone(),
                exists: std::fs::symlink_metadata(&dir).is_ok(),
                dir,
                seed: seed.clone(),
            });
        }
    }
    out.sort();
    out
}

/// The data directory, created (and seeded from `seed`) when missing; an existing one is never
/// touched. Returns the path and whether it was created now.
pub fn ensure(
    root: &Path,
    stack: &str,
    path: &str,
    seed: Option<&Path>,
) -> Result<(PathBuf, bool), DataError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir_of(root, stack, path)?;
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Ok((dir, false));
    }
    let io = |source| DataError::Io {
        path: dir.clone(),
        source,
    };
    // The root and the stack level are 0700: other host users cannot browse what containers
    // wrote. Containers see only their mount's root; the engine (root) traverses the parents.
    for private in [root.to_path_buf(), root.join(stack)] {
        if std::fs::symlink_metadata(&private).is_err() {
            std::fs::create_dir_all(&private).map_err(io)?;
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        }
    }
    let parent = dir.parent().expect("a data dir has a parent");
    std::fs::create_dir_all(parent).map_err(io)?;
    // Seed beside the target and rename: a crash never leaves a half-seeded directory that
    // would then count as existing and never be seeded again.
    let tmp = tempfile::tempdir_in(parent).map_err(io)?;
    let staged = tmp.path().join("d");
    match seed {
        Some(s) => copy_tree(s, &staged, Modes::Readable).map_err(io)?,
        None => {
            std::fs::create_dir(&staged).map_err(io)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
                .map_err(io)?;
        }
    }
    std::fs::rename(&staged, &dir).map_err(io)?;
    Ok((dir, true))
}

/// Remove a stack's data directory (`path`) or all of the stack's data (`None`). The only way
/// data directories go away.
pub fn remove(root: &Path, stack: &str, path: Option<&str>) -> Result<PathBuf, DataError> {
    let dir = match path {
        Some(p) => dir_of(root, stack, p)?,
        None => root.join(checked(stack)?),
    };
    let meta =
        std::fs::symlink_metadata(&dir).map_err(|_| DataError::Missing { path: dir.clone() })?;
    let res = if meta.is_dir() {
        std::fs::remove_dir_all(&dir)
    } else {
        std::fs::remove_file(&dir)
    };
    res.map_err(|source| DataError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Everything under the data root, `stack/path` for each top-level entry of each stack.
pub fn list(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DataError::Io { path: p, source }
    };
    let mut out = Vec::new();
    let stacks = match std::fs::read_dir(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(root)(e)),
    };
    for s in stacks {
        let s = s.map_err(io(root))?;
        if !s.file_type().map_err(io(root))?.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(s.path()).map_err(io(&s.path()))? {
            let e = e.map_err(io(&s.path()))?;
            out.push((
                format!(
                    "{}/{}",
                    s.file_name().to_string_lossy(),
                    e.file_name().to_string_lossy()
                ),
                e.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_once_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let seed = t.path().join("repo/data");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(seed.join("init.sql"), "v1").unwrap();
        let root = t.path().join("data");
        let (dir, created) = ensure(&root, "db", "data", Some(&seed)).unwrap();
        assert!(created);
        assert_eq!(std::fs::read_to_string(dir.join("init.sql")).unwrap(), "v1");
        std::fs::write(dir.join("written-by-container"), "x").unwrap();
        std::fs::write(seed.join("init.sql"), "v2").unwrap();
        let (_, created) = ensure(&root, "db", "data", Some(&seed)).unwrap();
        assert!(!created);
        assert_eq!(std::fs::read_to_string(dir.join("init.sql")).unwrap(), "v1");
        assert!(dir.join("written-by-container").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("db")), 0o700);
        assert_eq!(
            list(&root).unwrap(),
            vec![("db/data".to_string(), dir.clone())]
        );
        assert_eq!(
            dir_of(&root, "db", ".").unwrap(),
            root.join("db").join(WHOLE_STACK)
        );
        remove(&root, "db", Some("data")).unwrap();
        assert!(!dir.exists());
        assert!(dir_of(&root, "db", "../x").is_err());
    }
}
