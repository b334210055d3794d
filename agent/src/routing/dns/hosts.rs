//! hosts file backend: the names live in one block between markers; every line outside the
//! block is kept byte for byte. The file is replaced atomically (temp file + rename) where the
//! filesystem allows; /etc/hosts bind-mounted into a container cannot be renamed over
//! (EBUSY), so that case falls back to rewriting in place.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use super::{DnsBackend, Names};
use crate::routing::RoutingError;

pub const BEGIN: &str =
    "# BEGIN macula-gitops routing (managed by the agent; edits here are overwritten)";
pub const END: &str = "# END macula-gitops routing";

pub struct HostsFileBackend {
    path: PathBuf,
}

impl HostsFileBackend {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl DnsBackend for HostsFileBackend {
    fn name(&self) -> &'static str {
        "hosts"
    }

    fn apply<'a>(
        &'a self,
        _zone: &'a str,
        names: &'a Names,
    ) -> BoxFuture<'a, Result<bool, RoutingError>> {
        Box::pin(async move {
            let path = self.path.clone();
            let names = names.clone();
            tokio::task::spawn_blocking(move || sync_file(&path, &names))
                .await
                .map_err(|e| RoutingError::File {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })?
        })
    }

    fn observe<'a>(&'a self, _zone: &'a str) -> BoxFuture<'a, Result<Names, RoutingError>> {
        Box::pin(super::read_names(&self.path, parse_block))
    }
}

/// The names inside the managed block of `text`.
pub fn parse_block(text: &str) -> Names {
    text.lines()
        .skip_while(|l| l.trim_end() != BEGIN)
        .skip(1)
        .take_while(|l| l.trim_end() != END)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let ip = f.next()?.parse().ok()?;
            Some((f.next()?.to_ascii_lowercase(), ip))
        })
        .collect()
}

fn sync_file(path: &Path, names: &Names) -> Result<bool, RoutingError> {
    let err = |source| RoutingError::File {
        path: path.to_path_buf(),
        source,
    };
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    let new = render(&old, names);
    if new == old {
        return Ok(false);
    }
    write_atomic(path, new.as_bytes()).map_err(err)?;
    Ok(true)
}

/// `existing` with the managed block replaced by `names` (removed when `names` is empty,
/// appended at the end when there was none).
pub fn render(existing: &str, names: &Names) -> String {
    let mut block = String::new();
    if !names.is_empty() {
        block.push_str(BEGIN);
        block.push('\n');
        for (name, ip) in names {
            block.push_str(&format!("{ip}\t{name}\n"));
        }
        block.push_str(END);
        block.push('\n');
    }
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let begin = lines.iter().position(|l| l.trim_end() == BEGIN);
    let end = begin.and_then(|b| {
        lines[b..]
            .iter()
            .position(|l| l.trim_end() == END)
            .map(|e| b + e)
    });
    match (begin, end) {
        (Some(b), Some(e)) => {
            let mut out: String = lines[..b].concat();
            out.push_str(&block);
            out.push_str(&lines[e + 1..].concat());
            out
        }
        _ => {
            let mut out = existing.to_string();
            if !block.is_empty() {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&block);
            }
            out
        }
    }
}

fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    match tmp.persist(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) => {
            std::fs::write(path, content)
        }
        Err(e) => Err(e.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, [u8; 4])]) -> Names {
        pairs
            .iter()
            .map(|(n, ip)| (n.to_string(), (*ip).into()))
            .collect()
    }

    #[test]
    fn block_is_added_replaced_and_removed_leaving_other_lines() {
        let foreign = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";
        let one = render(foreign, &names(&[("grafana.macula.local", [127, 0, 0, 4])]));
        assert_eq!(
            one,
            format!("{foreign}{BEGIN}\n127.0.0.4\tgrafana.macula.local\n{END}\n")
        );
        let with_tail = format!("{one}10.0.0.1 after\n");
        let two = render(
            &with_tail,
            &names(&[
                ("grafana.macula.local", [127, 0, 0, 5]),
                ("a.macula.local", [127, 0, 0, 6]),
            ]),
        );
        assert_eq!(
            two,
            format!("{foreign}{BEGIN}\n127.0.0.6\ta.macula.local\n127.0.0.5\tgrafana.macula.local\n{END}\n10.0.0.1 after\n")
        );
        assert_eq!(
            render(
                &two,
                &names(&[
                    ("a.macula.local", [127, 0, 0, 6]),
                    ("grafana.macula.local", [127, 0, 0, 5])
                ])
            ),
            two
        );
        assert_eq!(
            render(&two, &Names::new()),
            format!("{foreign}10.0.0.1 after\n")
        );
        assert_eq!(render("no newline", &Names::new()), "no newline");
    }
}
