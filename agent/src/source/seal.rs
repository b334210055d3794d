//! A snapshot is checked before it is reused: its content digest is recorded beside it
//! (`snapshots/<commit>.sha256`) when it is made, and a snapshot whose files no longer match
//! (edited, deleted, half-removed by hand) is rebuilt from the cache instead of applied.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub fn seal_path(snapshot: &Path) -> PathBuf {
    let mut p = snapshot.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

/// Digest of every path, type, mode, file content and link target under `dir`, in name order.
pub fn digest(dir: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    walk(dir, Path::new(""), &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn walk(root: &Path, rel: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(e.path())?;
        h.update(rel.as_os_str().as_encoded_bytes());
        if meta.file_type().is_symlink() {
            h.update(b"\0l\0");
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        } else if meta.is_dir() {
            h.update(b"\0d\0");
            walk(root, &rel, h)?;
        } else {
            h.update(format!("\0f{:o}\0", meta.permissions().mode() & 0o777).as_bytes());
            h.update(Sha256::digest(std::fs::read(e.path())?));
        }
        h.update(b"\n");
    }
    Ok(())
}

/// Record the digest of `snapshot` (call before it is renamed into place, on the final name).
pub fn seal(tmp: &Path, final_dir: &Path) -> std::io::Result<()> {
    std::fs::write(seal_path(final_dir), digest(tmp)?)
}

/// Does `snapshot` still hold exactly what was sealed? No seal = not trusted.
pub fn intact(snapshot: &Path) -> bool {
    let Ok(want) = std::fs::read_to_string(seal_path(snapshot)) else {
        return false;
    };
    digest(snapshot).is_ok_and(|got| got == want.trim())
}
