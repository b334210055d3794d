//! A cluster directory packed as Flux's content layer, deterministically: entries sorted, every
//! owner 0, every mtime 0, modes 0644/0755 (git's two file modes, not the checkout's umask), no
//! `.git`, gzip without a timestamp — the same tree always gives the same digest, so an
//! unchanged directory is never pushed again.
//!
//! Entries keep their repo paths (`clusters/<name>/…`), so the Kustomization's `path` and the
//! child Kustomizations' paths are the same for a git and an oci source. A `kustomization.yaml`
//! inside that names a local directory or file outside it (`../../base/app`) brings that in too,
//! at its repo path: kustomize-controller builds from the artifact alone. Symlinks are refused,
//! as everywhere the agent reads the repo.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Artifact, OciError};
use crate::input::Limits;

/// Bytes of file content one artifact may hold (a cluster directory is manifests, not data).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// Kustomization fields that name other kustomizations or files by path.
const REFERENCE_KEYS: &[&str] = &["resources", "components", "bases"];

enum Entry {
    Dir,
    File { exec: bool, data: Vec<u8> },
}

struct Packer<'a> {
    repo_root: &'a Path,
    entries: BTreeMap<String, Entry>,
    roots: BTreeSet<PathBuf>,
    kustomizations: Vec<PathBuf>,
    bytes: u64,
}

/// Pack `path` (repo-relative, e.g. `./clusters/dev`) of the tree at `repo_root`.
pub fn pack(repo_root: &Path, path: &str) -> Result<Artifact, OciError> {
    let start = normalise(Path::new(""), path).ok_or_else(|| OciError::Escapes {
        path: PathBuf::from(path),
        reference: path.to_string(),
    })?;
    let mut p = Packer {
        repo_root,
        entries: BTreeMap::new(),
        roots: BTreeSet::new(),
        kustomizations: Vec::new(),
        bytes: 0,
    };
    p.add_root(&start)?;
    while let Some(k) = p.kustomizations.pop() {
        for r in references(&repo_root.join(&k), &k) {
            let dir = k.parent().unwrap_or(Path::new(""));
            let Some(target) = normalise(dir, &r) else {
                return Err(OciError::Escapes {
                    path: k.clone(),
                    reference: r,
                });
            };
            // Missing: a remote base (`github.com/…`) or a typo kustomize-controller reports.
            if repo_root.join(&target).symlink_metadata().is_err() {
                continue;
            }
            if !p.roots.iter().any(|root| target.starts_with(root)) {
                p.add_root(&target)?;
            }
        }
    }
    p.finish()
}

impl Packer<'_> {
    fn add_root(&mut self, rel: &Path) -> Result<(), OciError> {
        self.roots.insert(rel.to_path_buf());
        // Parents first, so the tarball unpacks with any tar.
        let mut parent = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            self.entries.insert(key(&parent), Entry::Dir);
        }
        self.add(rel)
    }

    fn add(&mut self, rel: &Path) -> Result<(), OciError> {
        let full = self.repo_root.join(rel);
        let io = |source| OciError::Io {
            path: rel.to_path_buf(),
            source,
        };
        let meta = full.symlink_metadata().map_err(io)?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(OciError::Symlink {
                path: rel.to_path_buf(),
            });
        }
        if kind.is_dir() {
            self.entries.insert(key(rel), Entry::Dir);
            let mut names: Vec<_> = std::fs::read_dir(&full)
                .map_err(io)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            names.sort();
            for name in names.into_iter().filter(|n| n != ".git") {
                self.add(&rel.join(name))?;
            }
            return Ok(());
        }
        if !kind.is_file() {
            return Err(OciError::Special {
                path: rel.to_path_buf(),
            });
        }
        self.bytes += meta.len();
        if self.bytes > MAX_BYTES {
            return Err(OciError::TooLarge {
                path: rel.to_path_buf(),
                limit: MAX_BYTES,
            });
        }
        let data = std::fs::read(&full).map_err(io)?;
        if rel
            .file_name()
            .is_some_and(|n| KUSTOMIZATION_FILES.iter().any(|k| n == *k))
        {
            self.kustomizations.push(rel.to_path_buf());
        }
        use std::os::unix::fs::PermissionsExt;
        let exec = meta.permissions().mode() & 0o111 != 0;
        self.entries.insert(key(rel), Entry::File { exec, data });
        Ok(())
    }

    fn finish(self) -> Result<Artifact, OciError> {
        let io = |source| OciError::Io {
            path: PathBuf::from("<artifact>"),
            source,
        };
        let mut tar = tar::Builder::new(Vec::new());
        let mut files = Vec::new();
        for (path, entry) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match entry {
                Entry::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    tar.append_data(&mut h, path, std::io::empty())
                        .map_err(io)?;
                }
                Entry::File { exec, data } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(if *exec { 0o755 } else { 0o644 });
                    h.set_size(data.len() as u64);
                    tar.append_data(&mut h, path, data.as_slice()).map_err(io)?;
                    files.push(path.clone());
                }
            }
        }
        let tarball = tar.into_inner().map_err(io)?;
        // No name and mtime 0 in the gzip header: the bytes depend on the content only.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        gz.write_all(&tarball).map_err(io)?;
        let layer = gz.finish().map_err(io)?;
        Ok(Artifact {
            digest: sha256(&layer),
            diff_id: sha256(&tarball),
            layer: Arc::new(layer),
            files,
        })
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The tar name of a repo-relative path (always `/`-separated).
fn key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// `dir` joined with `reference`, `.` and `..` resolved; `None` when it leaves the repo.
fn normalise(dir: &Path, reference: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in dir.join(reference).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The local paths a kustomization names; remote ones (`https://…`, `git@…`) are kustomize's.
/// A file that does not parse names nothing: kustomize-controller reports it.
fn references(full: &Path, rel: &Path) -> Vec<String> {
    let limits = Limits::current();
    let Ok(text) = crate::input::read_text(full, rel, &limits) else {
        return Vec::new();
    };
    let mut ignored = crate::diag::Diagnostics::default();
    let Some((value, _)) = crate::input::parse_yaml(rel, &text, None, &limits, &mut ignored) else {
        return Vec::new();
    };
    REFERENCE_KEYS
        .iter()
        .filter_map(|k| value.get(*k).and_then(serde_yaml::Value::as_sequence))
        .flatten()
        .filter_map(serde_yaml::Value::as_str)
        .filter(|r| !r.contains("://") && !r.starts_with("git@"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn names(a: &Artifact) -> Vec<String> {
        let gz = flate2::read::GzDecoder::new(a.layer.as_slice());
        let mut t = tar::Archive::new(gz);
        t.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!(
                    (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                    (0, 0, 0)
                );
                e.path().unwrap().display().to_string()
            })
            .collect()
    }

    #[test]
    fn the_cluster_directory_and_what_its_kustomizations_reference() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        write(
            r,
            "clusters/dev/kustomization.yaml",
            "resources: [apps, ../../base/web, https://example.com/x.yaml]\n",
        );
        write(r, "clusters/dev/apps/kustomization.yaml", "resources:\n  - ../../../base/db\n  - ../../../base/web/deploy.yaml\n  - github.com/org/repo//x?ref=v1\n");
        write(r, "base/web/deploy.yaml", "kind: Deployment\n");
        write(r, "base/db/kustomization.yaml", "resources: [sts.yaml]\n");
        write(r, "base/db/sts.yaml", "kind: StatefulSet\n");
        write(r, "base/other/x.yaml", "not referenced\n");
        write(r, "clusters/prod/kustomization.yaml", "other cluster\n");
        write(r, "clusters/dev/.git/config", "never packed\n");
        write(r, "desired-state/.env", "SECRET=never packed\n");
        let a = pack(r, "./clusters/dev").unwrap();
        assert_eq!(
            a.files,
            [
                "base/db/kustomization.yaml",
                "base/db/sts.yaml",
                "base/web/deploy.yaml",
                "clusters/dev/apps/kustomization.yaml",
                "clusters/dev/kustomization.yaml",
            ]
        );
        assert_eq!(
            names(&a),
            [
                "base",
                "base/db",
                "base/db/kustomization.yaml",
                "base/db/sts.yaml",
                "base/web",
                "base/web/deploy.yaml",
                "clusters",
                "clusters/dev",
                "clusters/dev/apps",
                "clusters/dev/apps/kustomization.yaml",
                "clusters/dev/kustomization.yaml",
            ]
        );
        // Same tree, same bytes; a changed file, a new digest.
        assert_eq!(pack(r, "clusters/dev").unwrap(), a);
        write(r, "base/web/deploy.yaml", "kind: Deployment # v2\n");
        assert_ne!(pack(r, "clusters/dev").unwrap().digest, a.digest);
    }

    #[test]
    fn symlinks_and_escapes_are_refused() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        write(
            r,
            "clusters/dev/kustomization.yaml",
            "resources: [x.yaml]\n",
        );
        std::os::unix::fs::symlink("/etc/hostname", r.join("clusters/dev/x.yaml")).unwrap();
        let e = pack(r, "clusters/dev").unwrap_err().to_string();
        assert!(
            e.starts_with("clusters/dev/x.yaml: is a symbolic link"),
            "{e}"
        );
        std::fs::remove_file(r.join("clusters/dev/x.yaml")).unwrap();
        write(
            r,
            "clusters/dev/kustomization.yaml",
            "resources: [../../../outside]\n",
        );
        let e = pack(r, "clusters/dev").unwrap_err().to_string();
        assert_eq!(
            e,
            "clusters/dev/kustomization.yaml: \"../../../outside\" points outside the repo"
        );
    }
}
