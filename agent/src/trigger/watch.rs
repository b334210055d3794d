//! Local commits: watch a local repository's refs and fire on change, no polling.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};

use super::{Cause, Trigger, TriggerError};

/// Keeps the watch alive; dropping it stops watching.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Does a change to `path` (inside `git_dir`) move a ref? Lock files are git's scratch space:
/// the ref changes only when the lock is renamed onto it.
pub fn is_ref_change(git_dir: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(git_dir) else {
        return false;
    };
    if path.extension().is_some_and(|e| e == "lock") {
        return false;
    }
    rel == Path::new("HEAD")
        || rel == Path::new("packed-refs")
        || rel.starts_with("refs/heads")
        || rel.starts_with("refs/tags")
}

pub fn watch_refs(git_dir: &Path, trigger: Trigger) -> Result<RefWatcher, TriggerError> {
    // inotify reports paths as given; compare against the same spelling.
    let git_dir: PathBuf = git_dir
        .canonicalize()
        .unwrap_or_else(|_| git_dir.to_path_buf());
    let dir = git_dir.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev.paths.iter().any(|p| is_ref_change(&dir, p)) {
            tracing::debug!(paths = ?ev.paths, "local ref changed");
            trigger.fire(Cause::LocalCommit);
        }
    })
    .map_err(|source| TriggerError::Watch {
        path: git_dir.clone(),
        source,
    })?;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TriggerError::Watch { path, source }
    };
    // The git dir itself, not recursively: HEAD and packed-refs live there, objects do not matter.
    watcher
        .watch(&git_dir, RecursiveMode::NonRecursive)
        .map_err(err(&git_dir))?;
    let refs = git_dir.join("refs");
    watcher
        .watch(&refs, RecursiveMode::Recursive)
        .map_err(err(&refs))?;
    Ok(RefWatcher { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_count() {
        let g = Path::new("/r/.git");
        assert!(is_ref_change(g, Path::new("/r/.git/HEAD")));
        assert!(is_ref_change(g, Path::new("/r/.git/packed-refs")));
        assert!(is_ref_change(g, Path::new("/r/.git/refs/heads/main")));
        assert!(is_ref_change(g, Path::new("/r/.git/refs/heads/feat/x")));
        assert!(!is_ref_change(g, Path::new("/r/.git/refs/heads/main.lock")));
        assert!(!is_ref_change(g, Path::new("/r/.git/index")));
        assert!(!is_ref_change(g, Path::new("/r/.git/objects/ab/cdef")));
        assert!(!is_ref_change(g, Path::new("/elsewhere/HEAD")));
    }
}
