//! The git source: fetch with gix into a bare cache, then materialise the configured `path`
//! of one commit into an immutable snapshot directory.
//!
//! Layout under the state dir:
//! - `cache/<url-hash>.git` — bare repo, remote-tracking refs under `refs/remotes/origin/*`.
//! - `snapshots/<commit>/` — the tree at `source.path` for that commit, written to a temp dir
//!   and renamed into place, so a reader sees either nothing or the whole tree.
//!
//! `desired_root` for a snapshot is `<snapshot>/desired-state`: `source.path` names the directory
//! that *holds* `desired-state/` (the repo root by default).

mod fetch;
mod heal;
mod local;
pub mod safety;
mod seal;
mod snapshot;
mod ssh;
pub mod verify;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, SourceConfig, VerifyMode};
use crate::diag::Diagnostic;

pub use local::{short_revision, LocalDir, REVISION_PREFIX};
pub use snapshot::gc_snapshots;
/// Kill the `ssh` of every fetch still running; `main` calls it as the agent exits.
pub use ssh::stop_all as stop_ssh;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("ref {reference:?} not found in {url} ({message})")]
    Resolve {
        url: String,
        reference: String,
        message: String,
    },
    #[error("reading commit {commit}: {message}")]
    Read { commit: String, message: String },
    #[error("commit {commit} has unsafe tree entries ({} problems); refused", .problems.len())]
    Unsafe {
        commit: String,
        problems: Vec<Diagnostic>,
    },
    #[error("revision {commit} refused: {message}")]
    Unverified { commit: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Everything needed to fetch; secrets already read.
#[derive(Clone)]
pub struct SourceSpec {
    pub url: String,
    /// Branch, tag, commit id, or `None` for the remote's HEAD.
    pub reference: Option<String>,
    /// Directory in the repo holding `desired-state/`, "" = root.
    pub path: String,
    pub depth: Option<NonZeroU32>,
    pub basic_auth: Option<(String, String)>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub verify: Option<(VerifyMode, verify::Keys)>,
    pub timeouts: crate::config::FetchTimeouts,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("SourceSpec")
            .field("url", &self.shown_url())
            .field("reference", &self.reference)
            .field("path", &self.path)
            .field("depth", &self.depth)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl SourceSpec {
    pub fn from_config(cfg: &SourceConfig) -> Result<Self, SourceError> {
        let path = cfg.path.clone().unwrap_or_default();
        crate::repo_path::check_rel_path(&path).map_err(|message| ConfigError::Invalid {
            field: "source.path".into(),
            message,
        })?;
        Ok(Self {
            url: normalise_url(&cfg.url),
            reference: cfg.reference.clone().filter(|r| !r.is_empty()),
            path: path.trim_matches('/').trim_start_matches("./").to_string(),
            depth: cfg.depth.and_then(NonZeroU32::new),
            basic_auth: cfg.auth.basic()?,
            ssh_key: cfg.auth.ssh_key.clone(),
            known_hosts: cfg.auth.known_hosts.clone(),
            timeouts: cfg.timeouts.resolve()?,
            verify: match &cfg.verify {
                None => None,
                Some(v) => Some((
                    v.mode,
                    verify::Keys::load(v).map_err(|message| ConfigError::Invalid {
                        field: "source.verify.keys".into(),
                        message,
                    })?,
                )),
            },
        })
    }

    /// The URL as it may be shown (logs, status, errors): credentials masked.
    pub fn shown_url(&self) -> String {
        crate::redact::redact(&self.url).into_owned()
    }

    /// Is the source a repository on this machine (for the ref watcher)? Returns its git dir.
    pub fn local_git_dir(&self) -> Option<PathBuf> {
        let p = self.url.strip_prefix("file://").unwrap_or(&self.url);
        if !p.starts_with('/') {
            return None;
        }
        let p = Path::new(p);
        if p.join(".git").is_dir() {
            Some(p.join(".git"))
        } else if p.join("HEAD").is_file() && p.join("refs").is_dir() {
            Some(p.to_path_buf())
        } else {
            None
        }
    }
}

/// Relative local paths become absolute so the daemon's cwd does not matter.
fn normalise_url(url: &str) -> String {
    let looks_remote = url.contains("://") || (url.contains(':') && !url.starts_with('/'));
    if looks_remote {
        return url.to_string();
    }
    std::path::absolute(url)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| url.to_string())
}

/// One revision of a source, ready to reconcile.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// Full hex commit id (git), or `dir:<digest>` (local directory).
    pub commit: String,
    /// `<state_dir>/snapshots/<commit>` (git); the directory itself (local).
    pub snapshot_dir: PathBuf,
    /// The `desired-state/` directory of this revision.
    pub desired_root: PathBuf,
    /// The commit summary line, for status.
    pub summary: String,
    /// The commit author as `Name <email>`, for notifications.
    pub author: String,
    pub fetch_duration: std::time::Duration,
}

/// The `desired-state/` directory of a snapshot (`<state_dir>/snapshots/<commit>`).
pub fn desired_root_in(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join("desired-state")
}

pub struct Source {
    spec: SourceSpec,
    state_dir: PathBuf,
}

impl Source {
    pub fn new(spec: SourceSpec, state_dir: &Path) -> Self {
        Self {
            spec,
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.state_dir.join("snapshots")
    }

    /// Fetch, resolve the ref, and make sure the snapshot of that commit exists. Blocking:
    /// call from `spawn_blocking`.
    ///
    /// When a sync fails and the cache proves broken (`heal::broken`), the cache is moved aside
    /// and the sync runs once more from scratch.
    pub fn sync(&self) -> Result<SyncOutcome, SourceError> {
        // gix's HTTP transport uses reqwest built without a default TLS crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cache = fetch::cache_dir(&self.state_dir, &self.spec.url);
        match self.sync_with(&cache) {
            Err(e)
                if !matches!(
                    e,
                    SourceError::Unsafe { .. } | SourceError::Unverified { .. }
                ) =>
            {
                let Some(why) = heal::broken(&cache) else {
                    return Err(e);
                };
                let aside = heal::move_aside(&cache).map_err(|source| SourceError::Io {
                    path: cache.clone(),
                    source,
                })?;
                tracing::warn!(cache = %cache.display(), moved_to = %aside.display(), reason = %why, error = %e, "git cache broken; moved aside, fetching afresh");
                self.sync_with(&cache)
            }
            r => r,
        }
    }

    fn sync_with(&self, cache: &Path) -> Result<SyncOutcome, SourceError> {
        let cache = cache.to_path_buf();
        let started = std::time::Instant::now();
        let repo = fetch::fetch(&self.spec, &cache)?;
        let fetch_duration = started.elapsed();
        let commit = fetch::resolve(&repo, &self.spec)?;
        let commit_hex = commit.to_string();
        if let Some((mode, keys)) = &self.spec.verify {
            fetch::verify(&repo, &self.spec, commit, *mode, keys).map_err(|message| {
                SourceError::Unverified {
                    commit: commit_hex.clone(),
                    message,
                }
            })?;
        }
        let found = repo.find_commit(commit).ok();
        let summary = found
            .as_ref()
            .and_then(|c| c.message().ok().map(|m| m.summary().to_string()))
            .unwrap_or_default();
        let author = found
            .as_ref()
            .and_then(|c| c.author().ok().map(|a| format!("{} <{}>", a.name, a.email)))
            .unwrap_or_default();
        let snapshot_dir =
            snapshot::materialise(&repo, commit, &self.spec.path, &self.snapshots_dir())?;
        Ok(SyncOutcome {
            commit: commit_hex,
            desired_root: desired_root_in(&snapshot_dir),
            snapshot_dir,
            summary,
            author,
            fetch_duration,
        })
    }
}
