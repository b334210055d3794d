//! The `kind` CLI behind a narrow trait: create, delete, list, kubeconfig.
//!
//! kind has no API; its CLI is the interface (as for ctlptl). Errors are mapped from its
//! stderr to the cases a user can act on: kind missing, host port taken, not ready in time.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ClusterError;

pub trait KindCli {
    /// Names of the kind clusters on the engine.
    fn clusters(&self) -> impl std::future::Future<Output = Result<Vec<String>, ClusterError>>;
    /// `kind create cluster --name <name> --config <config> --wait <wait>`.
    fn create(
        &self,
        name: &str,
        config: &Path,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<(), ClusterError>>;
    fn delete(&self, name: &str) -> impl std::future::Future<Output = Result<(), ClusterError>>;
    /// The external kubeconfig (API server on a loopback port of this host).
    fn kubeconfig(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<String, ClusterError>>;
}

/// The real `kind` binary.
#[derive(Debug, Clone)]
pub struct Kind {
    program: PathBuf,
}

impl Kind {
    /// Find `kind` on the process PATH.
    pub fn from_env() -> Result<Self, ClusterError> {
        Self::from_path_var(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// Find `kind` on the given PATH value (tests put a recording `kind` first).
    pub fn from_path_var(path: &OsStr) -> Result<Self, ClusterError> {
        find_on_path(path, "kind")
            .map(|program| Self { program })
            .ok_or(ClusterError::KindMissing)
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    async fn run(&self, args: &[&str]) -> Result<String, ClusterError> {
        let shown = args.join(" ");
        tracing::debug!(args = %shown, "running kind");
        let out = tokio::process::Command::new(&self.program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ClusterError::KindMissing,
                _ => ClusterError::Kind {
                    args: shown.clone(),
                    stderr: e.to_string(),
                },
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(classify(args, shown, stderr))
    }
}

/// Turn kind's stderr into the error a user can act on.
fn classify(args: &[&str], shown: String, stderr: String) -> ClusterError {
    let name = args
        .iter()
        .position(|a| *a == "--name")
        .and_then(|i| args.get(i + 1))
        .unwrap_or(&"")
        .to_string();
    let lower = stderr.to_lowercase();
    if lower.contains("cannot connect to the docker daemon")
        || lower.contains("docker: command not found")
        || lower.contains("executable file not found")
    {
        return ClusterError::Kind {
            args: shown,
            stderr: format!("the container engine is not available: {stderr}"),
        };
    }
    if lower.contains("port is already allocated") || lower.contains("address already in use") {
        let port = stderr
            .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .rfind(|t| t.contains(':') && t.rsplit(':').next().is_some_and(|p| !p.is_empty()))
            .unwrap_or("?")
            .to_string();
        return ClusterError::PortTaken {
            cluster: name,
            port,
        };
    }
    if lower.contains("timed out") || lower.contains("context deadline exceeded") {
        let wait = args
            .iter()
            .position(|a| *a == "--wait")
            .and_then(|i| args.get(i + 1))
            .and_then(|w| humantime::parse_duration(w).ok());
        return ClusterError::NotReady {
            cluster: name,
            timeout: wait.unwrap_or_default(),
        };
    }
    ClusterError::Kind {
        args: shown,
        stderr,
    }
}

pub fn find_on_path(path: &OsStr, program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl KindCli for Kind {
    async fn clusters(&self) -> Result<Vec<String>, ClusterError> {
        let out = self.run(&["get", "clusters"]).await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn create(&self, name: &str, config: &Path, wait: Duration) -> Result<(), ClusterError> {
        let config = config.to_string_lossy();
        let wait = format!("{}s", wait.as_secs());
        self.run(&[
            "create", "cluster", "--name", name, "--config", &config, "--wait", &wait,
        ])
        .await
        .map(drop)
    }

    async fn delete(&self, name: &str) -> Result<(), ClusterError> {
        self.run(&["delete", "cluster", "--name", name])
            .await
            .map(drop)
    }

    async fn kubeconfig(&self, name: &str) -> Result<String, ClusterError> {
        self.run(&["get", "kubeconfig", "--name", name]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_classification() {
        let args = [
            "create", "cluster", "--name", "dev", "--config", "c.yaml", "--wait", "300s",
        ];
        let e = classify(&args, "x".into(), "ERROR: failed to create cluster: command \"docker run ...\" failed with error: exit status 125\nCommand Output: docker: Error response from daemon: driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated.".into());
        assert_eq!(
            e.to_string(),
            "cluster dev: host port 0.0.0.0:8080 is already in use on this host"
        );
        let e = classify(
            &args,
            "x".into(),
            "ERROR: failed to create cluster: timed out waiting for the condition".into(),
        );
        assert_eq!(e.to_string(), "cluster dev: not ready after 300s");
    }
}
