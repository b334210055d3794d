//! dnsmasq backend: one conf file of `address=/name/ip` lines, rewritten only when its content
//! changes, followed by the configured reload. dnsmasq re-reads conf files only on restart
//! (SIGHUP re-reads /etc/hosts and friends, not `address=`), so the reload is either a command
//! (`systemctl restart dnsmasq`) or a signal to the pidfile's process — SIGTERM by default,
//! which assumes the operator's supervisor starts it again.
//!
//! When the reload fails the previous file content is put back, so the next reconcile sees a
//! difference again and retries the reload instead of believing dnsmasq is up to date.

use std::path::PathBuf;
use std::str::FromStr;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;

use super::{DnsBackend, Names};
use crate::routing::file::DnsmasqBackend;
use crate::routing::RoutingError;

pub const DEFAULT_FILE: &str = "macula-gitops.conf";

#[derive(Debug, Clone)]
pub enum Reload {
    Command(Vec<String>),
    Signal { pidfile: PathBuf, signal: Signal },
}

pub struct Dnsmasq {
    pub path: PathBuf,
    pub reload: Option<Reload>,
}

pub fn parse_signal(s: &str) -> Option<Signal> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

impl Dnsmasq {
    pub fn from_spec(spec: &DnsmasqBackend) -> Self {
        let reload = match (&spec.reload, &spec.pidfile) {
            (Some(cmd), _) => Some(Reload::Command(cmd.clone())),
            (None, Some(pidfile)) => Some(Reload::Signal {
                pidfile: pidfile.clone(),
                signal: spec
                    .signal
                    .as_deref()
                    .and_then(parse_signal)
                    .unwrap_or(Signal::SIGTERM),
            }),
            (None, None) => None,
        };
        Self {
            path: spec.dir.join(spec.file.as_deref().unwrap_or(DEFAULT_FILE)),
            reload,
        }
    }

    async fn reload(&self) -> Result<(), RoutingError> {
        match &self.reload {
            None => Ok(()),
            Some(Reload::Command(argv)) => {
                let command = argv.join(" ");
                let (prog, args) = argv.split_first().ok_or_else(|| RoutingError::Reload {
                    command: command.clone(),
                    reason: "empty command".into(),
                })?;
                let out = tokio::process::Command::new(prog)
                    .args(args)
                    .output()
                    .await
                    .map_err(|e| RoutingError::Reload {
                        command: command.clone(),
                        reason: e.to_string(),
                    })?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(RoutingError::Reload {
                        command,
                        reason: format!("{}: {}", out.status, one_line(&out.stderr)),
                    })
                }
            }
            Some(Reload::Signal { pidfile, signal }) => {
                let fail = |reason: String| RoutingError::Signal {
                    pidfile: pidfile.clone(),
                    reason,
                };
                let text = tokio::fs::read_to_string(pidfile)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let pid: i32 = text
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("{:?} is not a pid", text.trim())))?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), *signal)
                    .map_err(|e| fail(format!("kill -{signal} {pid}: {e}")))
            }
        }
    }
}

/// The conf file for `names`.
pub fn render(zone: &str, names: &Names) -> String {
    let mut out = format!(
        "# Managed by macula-gitops (routing.yaml, zone {zone}); rewritten on every change.\n"
    );
    for (name, ip) in names {
        out.push_str(&format!("address=/{name}/{ip}\n"));
    }
    out
}

impl DnsBackend for Dnsmasq {
    fn name(&self) -> &'static str {
        "dnsmasq"
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        names: &'a Names,
    ) -> BoxFuture<'a, Result<bool, RoutingError>> {
        Box::pin(async move {
            let err = |source| RoutingError::File {
                path: self.path.clone(),
                source,
            };
            let new = render(zone, names);
            let old = match tokio::fs::read_to_string(&self.path).await {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(err(e)),
            };
            if old.as_deref() == Some(new.as_str()) {
                return Ok(false);
            }
            if let Some(dir) = self.path.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(err)?;
            }
            write(&self.path, &new).await.map_err(err)?;
            if let Err(e) = self.reload().await {
                let restored = match &old {
                    Some(o) => write(&self.path, o).await,
                    None => tokio::fs::remove_file(&self.path).await,
                };
                if let Err(re) = restored {
                    tracing::warn!(path = %self.path.display(), error = %re, "could not restore the previous dnsmasq conf");
                }
                return Err(e);
            }
            Ok(true)
        })
    }

    fn observe<'a>(&'a self, _zone: &'a str) -> BoxFuture<'a, Result<Names, RoutingError>> {
        Box::pin(super::read_names(&self.path, parse))
    }
}

/// The `address=/name/ip` lines of a conf file `render` wrote.
pub fn parse(text: &str) -> Names {
    text.lines()
        .filter_map(|l| {
            let (name, ip) = l.strip_prefix("address=/")?.split_once('/')?;
            Some((name.to_ascii_lowercase(), ip.parse().ok()?))
        })
        .collect()
}

/// Write through a temp file and rename, so dnsmasq never reads half a file. The temp name
/// starts with a dot because dnsmasq's conf-dir skips such files.
async fn write(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, content).await?;
    tokio::fs::rename(&tmp, path).await
}

/// A command's stderr as one line of an error (`a; b`): the apply report lists one item a line.
fn one_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_reload_is_one_line_naming_the_command() {
        let d = Dnsmasq {
            path: PathBuf::from("/nonexistent/macula.conf"),
            reload: Some(Reload::Command(vec![
                "sh".into(),
                "-c".into(),
                "echo 'not booted with systemd' >&2; echo >&2; echo 'Host is down' >&2; exit 1"
                    .into(),
            ])),
        };
        let e = d.reload().await.expect_err("the command fails").to_string();
        assert!(
            e.starts_with("reload command \"sh -c ")
                && e.ends_with("failed: exit status: 1: not booted with systemd; Host is down"),
            "{e}"
        );
    }

    #[test]
    fn renders_address_lines_sorted() {
        let names: Names = [("b.z", [127, 0, 0, 3]), ("a.z", [127, 0, 0, 4])]
            .into_iter()
            .map(|(n, ip)| (n.to_string(), ip.into()))
            .collect();
        assert_eq!(
            render("z", &names),
            "# Managed by macula-gitops (routing.yaml, zone z); rewritten on every change.\naddress=/a.z/127.0.0.4\naddress=/b.z/127.0.0.3\n"
        );
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGHUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("nope"), None);
    }
}
