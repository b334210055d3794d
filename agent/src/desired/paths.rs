//! Paths from the repo never escape it: no absolute paths, no `..` leaving the root, no
//! symlink resolving outside. And content digests of the files services read, so editing a
//! bind-mounted config changes the service's spec hash.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dockerignore::DockerIgnore;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{path:?} is absolute: use a path relative to the compose file, inside the repo")]
    Absolute { path: String },
    #[error("{path:?} leaves the desired-state directory through '..'")]
    Escapes { path: String },
    #[error(
        "{path:?} resolves through a symlink to {target}, outside the desired-state directory"
    )]
    SymlinkEscape { path: String, target: String },
    #[error("{path:?} does not exist")]
    Missing { path: String },
    #[error("{path:?}: {message}")]
    Io { path: String, message: String },
}

/// Resolve `raw` (as written in a file under `base`) to a real path inside `root`.
pub fn resolve_inside(root: &Path, base: &Path, raw: &str) -> Result<PathBuf, PathError> {
    let p = Path::new(raw);
    if p.is_absolute() || raw.starts_with('~') {
        return Err(PathError::Absolute { path: raw.into() });
    }
    // Lexical check first: gives the clearer message for `../../etc`.
    let joined = base.join(p);
    let rel_to_root = joined
        .strip_prefix(root)
        .map_err(|_| PathError::Escapes { path: raw.into() })?;
    let mut depth: i64 = 0;
    for c in rel_to_root.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(PathError::Escapes { path: raw.into() });
        }
    }
    let real_root = root.canonicalize().map_err(|e| PathError::Io {
        path: root.display().to_string(),
        message: e.to_string(),
    })?;
    let real = match joined.canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PathError::Missing { path: raw.into() })
        }
        Err(e) => {
            return Err(PathError::Io {
                path: raw.into(),
                message: e.to_string(),
            })
        }
    };
    if !real.starts_with(&real_root) {
        return Err(PathError::SymlinkEscape {
            path: raw.into(),
            target: real.display().to_string(),
        });
    }
    Ok(real)
}

/// Every symlink inside the directory `dir` (bound into a container as `raw`) must resolve
/// inside `root`, as the link that names `dir` itself must: otherwise a revision could put any
/// host file into a container. Dangling links are refused too (their target cannot be judged).
pub fn check_links(root: &Path, dir: &Path, raw: &str) -> Result<(), PathError> {
    let io = |e: std::io::Error| PathError::Io {
        path: raw.into(),
        message: e.to_string(),
    };
    let real_root = root.canonicalize().map_err(io)?;
    if !std::fs::metadata(dir).map_err(io)?.is_dir() {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io)? {
            let e = e.map_err(io)?;
            let ft = e.file_type().map_err(io)?;
            let p = e.path();
            let shown = || format!("{raw}/{}", p.strip_prefix(dir).unwrap_or(&p).display());
            if ft.is_symlink() {
                match p.canonicalize() {
                    Ok(t) if t.starts_with(&real_root) => {}
                    Ok(t) => {
                        return Err(PathError::SymlinkEscape {
                            path: shown(),
                            target: t.display().to_string(),
                        })
                    }
                    Err(_) => return Err(PathError::Missing { path: shown() }),
                }
            } else if ft.is_dir() && e.file_name() != ".git" {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// sha256 of a file, or of a directory tree (relative names, modes and contents, sorted),
/// as lowercase hex.
pub fn digest(path: &Path) -> std::io::Result<String> {
    digest_except(path, &DockerIgnore::default())
}

/// `digest` of a build context: the files its `.dockerignore` leaves out do not count, so
/// editing them neither rebuilds nor recreates.
pub fn context_digest(dir: &Path) -> std::io::Result<String> {
    digest_except(dir, &DockerIgnore::load(dir)?)
}

/// `digest` of a tree without the subtrees in `skip` (paths as the walk spells them: under
/// `dir`), e.g. the agent's own state or data directories inside a watched local source.
pub fn digest_skipping(dir: &Path, skip: &[PathBuf]) -> std::io::Result<String> {
    let mut h = Sha256::new();
    digest_into(dir, Path::new(""), &DockerIgnore::default(), skip, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn digest_except(path: &Path, ignore: &DockerIgnore) -> std::io::Result<String> {
    let mut h = Sha256::new();
    digest_into(path, Path::new(""), ignore, &[], &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn digest_into(
    path: &Path,
    rel: &Path,
    ignore: &DockerIgnore,
    skip: &[PathBuf],
    h: &mut Sha256,
) -> std::io::Result<()> {
    // A link inside a tree is content (its target text), never followed: what is digested is
    // what `state::materialise` copies.
    let meta = if rel.as_os_str().is_empty() {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    if meta.file_type().is_symlink() {
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0link\0");
        h.update(std::fs::read_link(path)?.to_string_lossy().as_bytes());
        h.update([0]);
    } else if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if e.file_name() == ".git" || skip.iter().any(|s| *s == e.path()) {
                continue;
            }
            let child = rel.join(e.file_name());
            if !ignore.is_empty()
                && ignore.excluded(&child.to_string_lossy())
                && !(ignore.has_exceptions() && e.file_type()?.is_dir())
            {
                continue;
            }
            digest_into(&e.path(), &child, ignore, skip, h)?;
        }
    } else if !ignore.is_empty() && ignore.excluded(&rel.to_string_lossy()) {
        // Only reached inside an excluded directory an exception made us descend into.
    } else {
        use std::os::unix::fs::PermissionsExt;
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(
            (meta.permissions().mode() & 0o111 != 0)
                .to_string()
                .as_bytes(),
        );
        h.update(std::fs::read(path)?);
        h.update([0]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ds");
        let stack = root.join("stacks/web");
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::write(stack.join("ok.conf"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), stack.join("link")).unwrap();

        assert!(resolve_inside(&root, &stack, "./ok.conf").is_ok());
        assert!(resolve_inside(&root, &stack, "../web/ok.conf").is_ok());
        assert_eq!(
            resolve_inside(&root, &stack, "/etc/passwd"),
            Err(PathError::Absolute {
                path: "/etc/passwd".into()
            })
        );
        assert_eq!(
            resolve_inside(&root, &stack, "../../../secret"),
            Err(PathError::Escapes {
                path: "../../../secret".into()
            })
        );
        assert!(matches!(
            resolve_inside(&root, &stack, "./link"),
            Err(PathError::SymlinkEscape { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, &stack, "./nope"),
            Err(PathError::Missing { .. })
        ));
    }

    #[test]
    fn links_inside_a_bound_dir_must_stay_in_the_repo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ds");
        let conf = root.join("stacks/web/conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("app.conf"), "x").unwrap();
        std::os::unix::fs::symlink("app.conf", conf.join("alias")).unwrap();
        assert_eq!(check_links(&root, &conf, "./conf"), Ok(()));
        std::os::unix::fs::symlink("/etc/shadow", conf.join("shadow")).unwrap();
        assert!(matches!(
            check_links(&root, &conf, "./conf"),
            Err(PathError::SymlinkEscape { path, .. }) if path == "./conf/shadow"
        ));
    }

    #[test]
    fn digest_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, "one").unwrap();
        let d1 = digest(&f).unwrap();
        let t1 = digest(dir.path()).unwrap();
        std::fs::write(&f, "two").unwrap();
        assert_ne!(d1, digest(&f).unwrap());
        assert_ne!(t1, digest(dir.path()).unwrap());
    }
}
