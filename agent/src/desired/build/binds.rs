//! Bind sources: what a `volumes:` bind becomes. Read-only relative → a repo copy; read-write
//! relative → the stack's data directory (`crate::data`); absolute or `~/` → a host path the
//! host's policy must allow (`crate::policy`). Repo paths never leave the repo, links included.

use std::path::Path;

use super::rel_to;
use crate::desired::paths::{self, resolve_inside};
use crate::desired::spec::MountSource;

/// A read-only relative bind: the repo file or directory, digested; every link inside a bound
/// directory must stay in the repo.
fn repo_copy(root: &Path, stack_dir: &Path, src: &str) -> Result<MountSource, String> {
    let real = resolve_inside(root, stack_dir, src).map_err(|e| e.to_string())?;
    paths::check_links(root, &real, src).map_err(|e| e.to_string())?;
    let digest =
        paths::digest(&real).map_err(|e| format!("cannot read bind source {src:?}: {e}"))?;
    Ok(MountSource::Repo {
        path: rel_to(root, &real),
        digest,
        local: real,
    })
}

/// A read-only relative bind. A source the repo lacks is what Compose makes of it when it
/// creates bind sources (the short syntax, or `bind.create_host_path: true`): an empty directory
/// created on the host, here the stack's data directory for that path, mounted read-only —
/// `true` alongside says so, for a warning. Without `create`, a missing source is an error as it
/// is for Compose (a long-syntax bind).
pub(super) fn read_only(
    root: &Path,
    stack_dir: &Path,
    src: &str,
    create: bool,
) -> Result<(MountSource, bool), String> {
    match resolve_inside(root, stack_dir, src) {
        Err(paths::PathError::Missing { .. }) if create => {
            data_mount(root, stack_dir, src).map(|s| (s, true))
        }
        _ => repo_copy(root, stack_dir, src).map(|s| (s, false)),
    }
}

/// An absolute host path, or `~/…` expanded with the agent's `$HOME` as Compose does.
pub(super) fn host_path(src: &str) -> Result<String, String> {
    if let Some(rest) = src.strip_prefix("~/").or((src == "~").then_some("")) {
        // $HOME, else the agent user's home from the password database (a service manager may
        // start the agent without $HOME).
        let home = std::env::var("HOME")
            .ok()
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir.display().to_string())
            })
            .ok_or_else(|| format!("{src:?} needs $HOME, which is not set"))?;
        return Ok(format!("{}/{rest}", home.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string());
    }
    if src.starts_with('~') {
        return Err(format!(
            "{src:?}: `~user` paths are not supported; write the absolute path"
        ));
    }
    Ok(src.to_string())
}

/// A read-write relative bind: the stack's data directory for `src`, seeded from the repo when
/// the repo has that path. The path must stay inside the stack directory (it names the data
/// directory), and what seeds it obeys the same rules as any repo path (no escape, no link out).
pub(super) fn data_mount(root: &Path, stack_dir: &Path, src: &str) -> Result<MountSource, String> {
    let seed = match resolve_inside(root, stack_dir, src) {
        Ok(real) => {
            paths::check_links(root, &real, src).map_err(|e| e.to_string())?;
            Some(real)
        }
        // Compose creates a missing bind directory; so does apply.
        Err(paths::PathError::Missing { .. }) => None,
        Err(e) => return Err(e.to_string()),
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::Normal(n) => parts.push(n),
            _ => return Err(format!("{src:?}: a read-write bind is the stack's data directory and must be a path inside the stack directory (no `..`); use a named volume to share data between stacks")),
        }
    }
    // `.` (the whole stack directory, a common dev bind) is a data directory like any other.
    let rel: std::path::PathBuf = if parts.is_empty() {
        ".".into()
    } else {
        parts.iter().collect()
    };
    Ok(MountSource::Data {
        path: rel.to_string_lossy().into_owned(),
        seed,
    })
}
