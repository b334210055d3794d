//! What a tree from the remote may contain before any of it touches the disk.
//!
//! A hostile or broken repo must not write outside the snapshot (`..`, names with `/`), must not
//! smuggle a nested `.git`, and must not point symlinks at the host's files (`/etc/shadow` bind-
//! mounted into a container would be a leak the repo author never had the right to). Entry
//! names are checked by `crate::repo_path`, shared with the agent config.

use std::path::{Component, Path, PathBuf};

/// Lexical check of a symlink at `link` (relative to the snapshot root) pointing at `target`.
/// Chains through other symlinks are checked afterwards on disk by [`resolves_inside`].
pub fn symlink_target_inside(link: &Path, target: &[u8]) -> Result<(), String> {
    let t = Path::new(std::ffi::OsStr::from_bytes_compat(target));
    if t.is_absolute() {
        return Err(format!("symlink to absolute path {}", t.display()));
    }
    let mut depth: usize = link.parent().map(|p| p.components().count()).unwrap_or(0);
    for c in t.components() {
        match c {
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("symlink to {} leads out of the repo", t.display()))?
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink to absolute path {}", t.display()))
            }
        }
    }
    Ok(())
}

/// After materialising: does the symlink at `root/link` resolve to something inside `root`?
pub fn resolves_inside(root: &Path, link: &Path) -> Result<(), String> {
    let canon_root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    match root.join(link).canonicalize() {
        Ok(real) if real.starts_with(&canon_root) => Ok(()),
        Ok(_) => Err("symlink leads out of the repo".into()),
        Err(_) => Err("dangling symlink (its target is not in the repo)".into()),
    }
}

trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &Self;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// `a/b` from components, for messages and diagnostics.
pub fn display_path(parts: &[&[u8]]) -> PathBuf {
    parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks() {
        let ok = |l: &str, t: &str| symlink_target_inside(Path::new(l), t.as_bytes());
        assert!(ok("a/link", "../b/file").is_ok());
        assert!(ok("a/b/link", "../../x").is_ok());
        assert!(ok("link", "../x").is_err());
        assert!(ok("a/link", "../../x").is_err());
        assert!(ok("link", "/etc/passwd").is_err());
        assert!(ok("link", "a/../../x").is_err());
    }
}
