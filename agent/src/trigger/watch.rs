//! Local sources, no polling: a local repository's refs (fire on a commit), and a local
//! directory's files (fire once a burst of saves has gone quiet).

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Keeps a tree watch alive; dropping it stops watching.
pub struct TreeWatcher {
    _watcher: notify::RecommendedWatcher,
    debounce: tokio::task::JoinHandle<()>,
}

impl Drop for TreeWatcher {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

/// Is a change to `path` an edit of the desired state? Not when it is in `.git` or in one of
/// the agent's own directories (`skip`): the pass it starts would otherwise start another.
pub fn is_edit(root: &Path, skip: &[PathBuf], path: &Path) -> bool {
    path.starts_with(root)
        && !path
            .strip_prefix(root)
            .is_ok_and(|rel| rel.components().any(|c| c.as_os_str() == ".git"))
        && !skip.iter().any(|s| path.starts_with(s))
}

/// Watch `root` recursively; fire `LocalEdit` once no edit has been seen for `quiet` (an editor
/// saving writes a temp file, renames it, touches metadata: one pass, not four). Must be
/// called inside the runtime (the debounce is a task).
pub fn watch_tree(
    root: &Path,
    skip: &[PathBuf],
    trigger: Trigger,
    quiet: Duration,
) -> Result<TreeWatcher, TriggerError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (dir, skip) = (root.to_path_buf(), skip.to_vec());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        // Reading the tree (every pass does) is not an edit.
        if ev.kind.is_access() {
            return;
        }
        if ev.paths.iter().any(|p| is_edit(&dir, &skip, p)) {
            let _ = tx.send(());
        }
    })
    .map_err(|source| TriggerError::Watch {
        path: root.to_path_buf(),
        source,
    })?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(|source| TriggerError::Watch {
            path: root.to_path_buf(),
            source,
        })?;
    let debounce = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(quiet, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::debug!("local directory edited");
            trigger.fire(Cause::LocalEdit);
        }
    });
    Ok(TreeWatcher {
        _watcher: watcher,
        debounce,
    })
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

    #[test]
    fn own_writes_and_git_are_not_edits() {
        let (root, skip) = (Path::new("/ds"), [PathBuf::from("/ds/.state")]);
        assert!(is_edit(
            root,
            &skip,
            Path::new("/ds/stacks/web/compose.yaml")
        ));
        assert!(is_edit(root, &skip, Path::new("/ds/hosts.yaml")));
        assert!(!is_edit(root, &skip, Path::new("/ds/.state/applied.json")));
        assert!(!is_edit(root, &skip, Path::new("/ds/.git/index")));
        assert!(!is_edit(root, &skip, Path::new("/elsewhere/x")));
    }

    #[tokio::test]
    async fn a_burst_of_saves_fires_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("canonical");
        let t = Trigger::new();
        let _w = watch_tree(&root, &[], t.clone(), Duration::from_millis(50)).expect("watch");
        // Saved in place a few times, then the way most editors save: a temporary file
        // written, renamed over the original, its mode set.
        for i in 0..5 {
            std::fs::write(root.join("compose.yaml"), format!("v{i}\n")).expect("write");
        }
        let tmp = root.join(".compose.yaml.tmp");
        std::fs::write(&tmp, "v5\n").expect("write temp");
        std::fs::rename(&tmp, root.join("compose.yaml")).expect("rename");
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        std::fs::set_permissions(root.join("compose.yaml"), perms).expect("chmod");
        let p = t.next().await;
        assert_eq!(p.causes, vec![Cause::LocalEdit]);
        let again = tokio::time::timeout(Duration::from_millis(400), t.next()).await;
        assert!(again.is_err(), "one burst, one trigger");
    }
}
