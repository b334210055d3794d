//! The local directory source: a `desired-state/` directory on this machine, used as it is
//! (no snapshot). It has no commits: its revision is a content digest of the tree, so an edit
//! makes a new revision and saving the same content again does not.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{SourceError, SyncOutcome};

/// Hex digits of the tree digest in a revision (`dir:<digest>`): 80 bits, enough to tell edits apart.
const REVISION_DIGITS: usize = 20;

/// What marks a local directory's revision: `dir:<digest>`, never a commit id.
pub const REVISION_PREFIX: &str = "dir:";

/// Digest digits a shortened `dir:` revision keeps: `dir:` and 3 digits would tell nothing apart.
const SHORT_DIGEST_DIGITS: usize = 12;

/// A revision as people read it: a commit's first `commit_digits` characters, or for a local
/// directory `dir:` and the digest's first 12 digits (the marker is kept so the digest is not
/// taken for a commit).
pub fn short_revision(revision: &str, commit_digits: usize) -> String {
    match revision.strip_prefix(REVISION_PREFIX) {
        Some(digest) => {
            let digits: String = digest.chars().take(SHORT_DIGEST_DIGITS).collect();
            format!("{REVISION_PREFIX}{digits}")
        }
        None => revision.chars().take(commit_digits).collect(),
    }
}

#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    /// The agent's own directories inside `root` (state, data): their writes are not edits.
    skip: Vec<PathBuf>,
}

impl LocalDir {
    /// `root` must be a directory; `own` are the agent's directories, kept out of the revision
    /// when they lie inside it.
    pub fn new(root: &Path, own: &[PathBuf]) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: root.to_path_buf(),
            source,
        };
        let root = root.canonicalize().map_err(io)?;
        if !root.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "the desired state must be a directory",
            )));
        }
        let skip = own
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .filter(|d| d.starts_with(&root) && *d != root)
            .collect();
        Ok(Self { root, skip })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directories inside `root` whose changes are the agent's own.
    pub fn skip(&self) -> &[PathBuf] {
        &self.skip
    }

    /// The tree's revision now. Blocking (reads every file): call from `spawn_blocking`.
    pub fn read(&self) -> Result<SyncOutcome, SourceError> {
        let started = Instant::now();
        let digest =
            crate::desired::paths::digest_skipping(&self.root, &self.skip).map_err(|source| {
                SourceError::Io {
                    path: self.root.clone(),
                    source,
                }
            })?;
        Ok(SyncOutcome {
            commit: format!("{REVISION_PREFIX}{}", &digest[..REVISION_DIGITS]),
            snapshot_dir: self.root.clone(),
            desired_root: self.root.clone(),
            summary: format!("local directory {}", self.root.display()),
            // A directory has no author: whoever edits it is at this machine.
            author: String::new(),
            fetch_duration: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_follows_content_not_the_agents_own_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::create_dir_all(root.join("stacks/web")).expect("mkdir");
        std::fs::write(root.join("stacks/web/compose.yaml"), "services: {}\n").expect("write");
        std::fs::create_dir_all(root.join(".state")).expect("mkdir");
        let src = LocalDir::new(root, &[root.join(".state")]).expect("a dir");
        let r1 = src.read().expect("read").commit;
        assert!(
            r1.starts_with("dir:") && r1.len() == 4 + REVISION_DIGITS,
            "{r1}"
        );
        std::fs::write(root.join(".state/applied"), "x").expect("own write");
        assert_eq!(src.read().expect("read").commit, r1);
        std::fs::write(root.join("stacks/web/compose.yaml"), "services: {a: {}}\n").expect("edit");
        let r2 = src.read().expect("read").commit;
        assert_ne!(r2, r1);
        std::fs::write(root.join("stacks/web/compose.yaml"), "services: {}\n").expect("undo");
        assert_eq!(src.read().expect("read").commit, r1);
        assert!(LocalDir::new(&root.join("missing"), &[]).is_err());
    }

    #[test]
    fn a_short_revision_keeps_the_dir_marker_and_twelve_digits() {
        assert_eq!(
            short_revision("dir:0123456789abcdef0123", 7),
            "dir:0123456789ab"
        );
        assert_eq!(short_revision("dir:0123", 7), "dir:0123");
        assert_eq!(short_revision(&"a1".repeat(20), 7), "a1a1a1a");
        assert_eq!(short_revision(&"a1".repeat(20), 12), "a1a1a1a1a1a1");
    }
}
