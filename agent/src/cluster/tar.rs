//! A minimal ustar writer for build contexts (the engine's build API takes a tar stream).
//! Regular files, directories and symlinks; paths over 100 bytes use the ustar prefix field.

use std::io;
use std::path::Path;

/// One entry of a build context, in the order it goes into the archive.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

fn header(path: &str, mode: u32, size: u64, kind: u8, link: &str) -> io::Result<[u8; 512]> {
    let mut h = [0u8; 512];
    let (prefix, name) = if path.len() <= 100 {
        ("", path)
    } else {
        let cut = path[..path.len().min(155)]
            .rfind('/')
            .ok_or_else(|| io::Error::other(format!("path too long for tar: {path}")))?;
        (&path[..cut], &path[cut + 1..])
    };
    if name.len() > 100 || link.len() > 100 {
        return Err(io::Error::other(format!("path too long for tar: {path}")));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    // A fixed mtime keeps the archive (and the engine's build cache key) reproducible.
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Write `entries` as a tar archive.
pub fn write(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Dir { path, mode } => out.extend_from_slice(&header(
                &format!("{}/", path.trim_end_matches('/')),
                *mode,
                0,
                b'5',
                "",
            )?),
            Entry::Symlink { path, target } => {
                out.extend_from_slice(&header(path, 0o777, 0, b'2', target)?)
            }
            Entry::File { path, mode, data } => {
                out.extend_from_slice(&header(path, *mode, data.len() as u64, b'0', "")?);
                out.extend_from_slice(data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
        }
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// Every entry under `root`, sorted by path, skipping `.git`. Paths are relative to `root`.
pub fn collect(root: &Path) -> io::Result<Vec<Entry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let rel = path
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?.to_string_lossy().into_owned();
                entries.push(Entry::Symlink { path: rel, target });
            } else if meta.is_dir() {
                entries.push(Entry::Dir { path: rel, mode });
                stack.push(path);
            } else if meta.is_file() {
                entries.push(Entry::File {
                    path: rel,
                    mode,
                    data: std::fs::read(&path)?,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU tar (present wherever git is) reads what we write.
    #[test]
    fn system_tar_lists_the_archive() {
        let long = format!("{}/f.txt", "d".repeat(120));
        let data = write(&[
            Entry::Dir {
                path: "a".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "a/x".into(),
                mode: 0o644,
                data: b"hello".to_vec(),
            },
            Entry::Symlink {
                path: "l".into(),
                target: "a/x".into(),
            },
            Entry::File {
                path: long.clone(),
                mode: 0o600,
                data: vec![1; 600],
            },
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.tar");
        std::fs::write(&f, data).unwrap();
        let Ok(out) = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&f)
            .output()
        else {
            println!("skipped: tar not on PATH");
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in ["a/x", "l -> a/x", &long, " 5 "] {
            assert!(listing.contains(want), "{want} not in {listing}");
        }
    }
}
