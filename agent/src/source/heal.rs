//! A cache that cannot be trusted is moved aside, so the next fetch starts clean instead of
//! failing every poll until someone deletes it by hand. Only checks that are cheap and certain
//! count as "broken" — a network error must never cost the cache.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Why the bare cache at `cache` is unusable, or `None` when it looks sound: it does not open
/// (bad config, missing HEAD), or a pack does not end with the checksum its index records (a
/// truncated or overwritten pack).
pub fn broken(cache: &Path) -> Option<String> {
    if !cache.exists() {
        return None;
    }
    if let Err(e) = gix::open_opts(cache, gix::open::Options::isolated()) {
        return Some(format!("does not open: {}", super::fetch::chain(&e)));
    }
    let packs = cache.join("objects/pack");
    let entries = std::fs::read_dir(&packs).ok()?;
    for e in entries.flatten() {
        let idx = e.path();
        if idx.extension().and_then(|x| x.to_str()) != Some("idx") {
            continue;
        }
        let pack = idx.with_extension("pack");
        match (tail(&idx, 40), tail(&pack, 20)) {
            (Some(i), Some(p)) if i[..20] == p[..] => {}
            _ => {
                return Some(format!(
                    "{} does not end with the checksum {} records (truncated?)",
                    pack.display(),
                    idx.display()
                ))
            }
        }
    }
    None
}

fn tail(path: &Path, n: usize) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < n as u64 {
        return None;
    }
    f.seek(SeekFrom::End(-(n as i64))).ok()?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Rename `cache` to `<cache>.broken-<unix seconds>` (kept for a post-mortem, never read again).
pub fn move_aside(cache: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut to = cache.as_os_str().to_owned();
    to.push(format!(".broken-{secs}"));
    let to = PathBuf::from(to);
    std::fs::rename(cache, &to)?;
    Ok(to)
}
