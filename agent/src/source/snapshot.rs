//! Materialise one commit's tree into `snapshots/<commit>/`, atomically and safely.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gix::object::tree::EntryKind;

use super::{safety, SourceError};
use crate::diag::Diagnostic;

/// Write the tree at `subdir` of `commit` to `<snapshots>/<commit>/` unless it is already there.
/// Every unsafe entry is collected and reported; if there is any, nothing is kept.
pub fn materialise(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    subdir: &str,
    snapshots: &Path,
) -> Result<PathBuf, SourceError> {
    let commit_hex = commit.to_string();
    let final_dir = snapshots.join(&commit_hex);
    if final_dir.is_dir() {
        if super::seal::intact(&final_dir) {
            return Ok(final_dir);
        }
        tracing::warn!(snapshot = %final_dir.display(), "snapshot does not match its seal; rebuilding it");
        std::fs::remove_dir_all(&final_dir).map_err(|source| SourceError::Io {
            path: final_dir.clone(),
            source,
        })?;
    }
    let read_err = |message: String| SourceError::Read {
        commit: commit_hex.clone(),
        message,
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    std::fs::create_dir_all(snapshots).map_err(io(snapshots))?;

    let root_tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| read_err(e.to_string()))?;
    let mut tree_id = root_tree.id;
    for part in subdir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| read_err(e.to_string()))?;
        let mut next = None;
        for entry in tree.iter() {
            let entry = entry.map_err(|e| read_err(e.to_string()))?;
            if entry.filename() == part.as_bytes() && entry.mode().is_tree() {
                next = Some(entry.object_id());
            }
        }
        tree_id = next.ok_or_else(|| read_err(format!("no directory {subdir:?} in the repo")))?;
    }

    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{commit_hex}-"))
        .tempdir_in(snapshots)
        .map_err(io(snapshots))?;
    // Successive versions of a file are delta chains in the pack; without a cache every blob
    // re-inflates its whole chain from the base. gix is built without its LRU features, so a
    // small cache of decoded bases lives here.
    let mut cached = repo.clone();
    cached
        .objects
        .set_pack_cache(|| Box::new(BaseCache::default()));
    let mut w = Writer {
        repo: &cached,
        root: tmp.path().to_path_buf(),
        problems: Vec::new(),
        links: Vec::new(),
        commit: commit_hex.clone(),
    };
    w.write_tree(tree_id, &mut Vec::new())?;
    // Chains of symlinks can escape even when each one looks fine on its own; the filesystem
    // resolves them for us now that everything is on disk.
    for link in std::mem::take(&mut w.links) {
        if let Err(message) = safety::resolves_inside(&w.root, &link) {
            w.problem(&link, message);
        }
    }
    if !w.problems.is_empty() {
        return Err(SourceError::Unsafe {
            commit: commit_hex,
            problems: w.problems,
        });
    }
    let tmp = tmp.keep();
    super::seal::seal(&tmp, &final_dir).map_err(|source| SourceError::Io {
        path: super::seal::seal_path(&final_dir),
        source,
    })?;
    match std::fs::rename(&tmp, &final_dir) {
        Ok(()) => Ok(final_dir),
        // Another sync of the same commit won the race; its copy is identical.
        Err(_) if final_dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(final_dir)
        }
        Err(source) => Err(SourceError::Io {
            path: final_dir,
            source,
        }),
    }
}

/// Decoded pack entries by (pack, offset), dropped wholesale when over the cap.
#[derive(Default)]
struct BaseCache {
    entries: std::collections::HashMap<(u32, u64), (gix::object::Kind, Vec<u8>, usize)>,
    bytes: usize,
}

impl BaseCache {
    const CAP: usize = 64 << 20;
}

impl gix::odb::pack::cache::DecodeEntry for BaseCache {
    fn put(
        &mut self,
        pack_id: u32,
        offset: u64,
        data: &[u8],
        kind: gix::object::Kind,
        compressed_size: usize,
    ) {
        if data.len() > Self::CAP / 8 {
            return;
        }
        if self.bytes + data.len() > Self::CAP {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += data.len();
        self.entries
            .insert((pack_id, offset), (kind, data.to_vec(), compressed_size));
    }

    fn get(
        &mut self,
        pack_id: u32,
        offset: u64,
        out: &mut Vec<u8>,
    ) -> Option<(gix::object::Kind, usize)> {
        let (kind, data, compressed) = self.entries.get(&(pack_id, offset))?;
        out.clear();
        out.extend_from_slice(data);
        Some((*kind, *compressed))
    }
}

struct Writer<'r> {
    repo: &'r gix::Repository,
    root: PathBuf,
    problems: Vec<Diagnostic>,
    links: Vec<PathBuf>,
    commit: String,
}

impl Writer<'_> {
    fn problem(&mut self, rel: &Path, message: String) {
        self.problems
            .push(Diagnostic::error(rel, None, "", message));
    }

    fn write_tree(&mut self, id: gix::ObjectId, rel: &mut Vec<Vec<u8>>) -> Result<(), SourceError> {
        let read_err = |message: String| SourceError::Read {
            commit: self.commit.clone(),
            message,
        };
        let tree = self
            .repo
            .find_tree(id)
            .map_err(|e| read_err(e.to_string()))?;
        let mut entries = Vec::new();
        for e in tree.iter() {
            let e = e.map_err(|e| read_err(e.to_string()))?;
            entries.push((e.filename().to_vec(), e.mode().kind(), e.object_id()));
        }
        drop(tree);
        for (name, kind, oid) in entries {
            rel.push(name.clone());
            let rel_path = safety::display_path(&rel.iter().map(Vec::as_slice).collect::<Vec<_>>());
            if let Err(m) = crate::repo_path::check_name(&name) {
                self.problem(&rel_path, m);
                rel.pop();
                continue;
            }
            let abs = self.root.join(&rel_path);
            match kind {
                EntryKind::Tree => {
                    std::fs::create_dir(&abs).map_err(|source| SourceError::Io {
                        path: abs.clone(),
                        source,
                    })?;
                    self.write_tree(oid, rel)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let data = self.blob(oid)?;
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o755
                    } else {
                        0o644
                    };
                    write_file(&abs, &data, mode)?;
                }
                EntryKind::Link => {
                    let target = self.blob(oid)?;
                    match safety::symlink_target_inside(&rel_path, &target) {
                        Err(m) => self.problem(&rel_path, m),
                        Ok(()) => {
                            let t = std::ffi::OsStr::from_encoded_bytes_checked(&target);
                            std::os::unix::fs::symlink(t, &abs).map_err(|source| {
                                SourceError::Io {
                                    path: abs.clone(),
                                    source,
                                }
                            })?;
                            self.links.push(rel_path.clone());
                        }
                    }
                }
                // Submodules are not fetched; the desired state must be self-contained.
                EntryKind::Commit => {
                    tracing::warn!(path = %rel_path.display(), "submodule ignored in snapshot")
                }
            }
            rel.pop();
        }
        Ok(())
    }

    fn blob(&self, oid: gix::ObjectId) -> Result<Vec<u8>, SourceError> {
        self.repo
            .find_blob(oid)
            .map(|b| b.data.clone())
            .map_err(|e| SourceError::Read {
                commit: self.commit.clone(),
                message: format!("blob {oid}: {e}"),
            })
    }
}

trait OsStrFromBytes {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr;
}
impl OsStrFromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)
}

/// Remove snapshots other than `keep` (the applied and the newest), and stale temp dirs.
pub fn gc_snapshots(snapshots: &Path, keep: &[&str]) -> std::io::Result<usize> {
    let mut removed = 0;
    let rd = match std::fs::read_dir(snapshots) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let commit = name.strip_suffix(".sha256").unwrap_or(&name);
        if keep.contains(&commit) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        } else {
            // The seal of a removed snapshot.
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(removed)
}
