//! Where revisions come from: a git repository (fetched into snapshots) or a local directory
//! (used in place, revision = content digest). Everything else in the daemon is the same code.

use std::sync::Arc;
use std::time::Duration;

use super::DaemonError;
use crate::config::AgentConfig;
use crate::source::{LocalDir, Source, SourceError, SourceSpec, SyncOutcome};
use crate::trigger::{watch, Trigger};

/// Quiet time after the last edit of a local directory before its pass starts: an editor's
/// save (temporary file, rename, mode) is a few events within a millisecond or two; a pass
/// that starts inside a slower burst (a `git checkout` of many files) is followed by one more.
const EDIT_QUIET: Duration = Duration::from_millis(50);
/// Reading a local directory is a digest of its files; past this something is wrong (a FUSE
/// mount that hangs), and the pass fails instead of waiting.
const DIR_READ_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub enum Origin {
    Git(Arc<Source>),
    Dir(Arc<LocalDir>),
}

/// Keeps a source watch (refs of a local repository, files of a local directory) alive.
pub enum Watch {
    Refs(watch::RefWatcher),
    Tree(watch::TreeWatcher),
}

impl Origin {
    /// The git `source:` when set, else the local directory (`desired_state`). The agent's own
    /// directories are named so that their writes never count as edits.
    pub fn from_config(
        cfg: &AgentConfig,
        state_dir: &std::path::Path,
    ) -> Result<Self, DaemonError> {
        match &cfg.source {
            Some(src) => Ok(Origin::Git(Arc::new(Source::new(
                SourceSpec::from_config(src)?,
                state_dir,
            )))),
            None => {
                let own = [state_dir.to_path_buf(), cfg.data_root()];
                Ok(Origin::Dir(Arc::new(LocalDir::new(
                    &cfg.desired_state(),
                    &own,
                )?)))
            }
        }
    }

    /// `git` or `dir`, as `/status.source_kind` says.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Git(_) => "git",
            Origin::Dir(_) => "dir",
        }
    }

    /// What status and logs show as the source (credentials masked).
    pub fn shown(&self) -> String {
        match self {
            Origin::Git(s) => s.spec().shown_url(),
            Origin::Dir(d) => d.root().display().to_string(),
        }
    }

    pub fn reference(&self) -> Option<String> {
        match self {
            Origin::Git(s) => s.spec().reference.clone(),
            Origin::Dir(_) => None,
        }
    }

    pub fn path(&self) -> String {
        match self {
            Origin::Git(s) => s.spec().path.clone(),
            Origin::Dir(_) => String::new(),
        }
    }

    /// The git URL, Flux's default `git_url`.
    pub fn git_url(&self) -> Option<String> {
        match self {
            Origin::Git(s) => Some(s.spec().url.clone()),
            Origin::Dir(_) => None,
        }
    }

    /// Upper bound of one read: a trickling server defeats every per-read limit.
    pub fn deadline(&self) -> (Duration, &'static str) {
        match self {
            Origin::Git(s) => (s.spec().timeouts.total, "source.timeouts.total"),
            Origin::Dir(_) => (DIR_READ_LIMIT, "the local directory read limit"),
        }
    }

    /// The newest revision. Blocking: call from `spawn_blocking`.
    pub fn read(&self) -> Result<SyncOutcome, SourceError> {
        match self {
            Origin::Git(s) => s.sync(),
            Origin::Dir(d) => d.read(),
        }
    }

    /// Fire on a local commit (a repository on this machine) or a saved edit (a directory).
    pub fn watch(&self, trigger: Trigger) -> Result<Option<Watch>, DaemonError> {
        match self {
            Origin::Git(s) => match s.spec().local_git_dir() {
                Some(dir) => {
                    tracing::info!(git_dir = %dir.display(), "watching local repository refs");
                    Ok(Some(Watch::Refs(watch::watch_refs(&dir, trigger)?)))
                }
                None => Ok(None),
            },
            Origin::Dir(d) => {
                tracing::info!(dir = %d.root().display(), "watching the local directory");
                let w = watch::watch_tree(d.root(), d.skip(), trigger, EDIT_QUIET)?;
                Ok(Some(Watch::Tree(w)))
            }
        }
    }

    /// The `desired-state/` of an earlier revision, for a rollback: a git snapshot (kept by
    /// `gc` while listed in `keep`); a local directory keeps no earlier revision.
    pub fn desired_root_of(&self, revision: &str) -> Option<std::path::PathBuf> {
        match self {
            Origin::Git(s) => Some(crate::source::desired_root_in(
                &s.snapshots_dir().join(revision),
            )),
            Origin::Dir(_) => None,
        }
    }

    /// Drop snapshots other than `keep` (git); a local directory has none.
    pub fn gc(&self, keep: &[&str]) {
        if let Origin::Git(s) = self {
            if let Err(e) = crate::source::gc_snapshots(&s.snapshots_dir(), keep) {
                tracing::warn!(error = %e, "snapshot cleanup failed");
            }
        }
    }
}
