//! `macula-gitops install-service`: a systemd unit for the daemon.

use std::path::{Path, PathBuf};

use super::DaemonError;

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The agent binary the unit runs (default: the running executable).
    pub exe: PathBuf,
    /// `--config` passed to `run`.
    pub config: PathBuf,
    /// Where to write the unit (default `/etc/systemd/system/macula-gitops.service`).
    pub unit_path: PathBuf,
}

/// The unit text. The daemon drives Docker, so it starts after docker.service; SIGTERM lets it
/// finish the reconcile in flight, hence the generous stop timeout.
pub fn service_unit(opts: &ServiceOptions) -> String {
    let exe = shell_words::quote(&opts.exe.to_string_lossy()).into_owned();
    let cfg = shell_words::quote(&opts.config.to_string_lossy()).into_owned();
    format!(
        "[Unit]
Description=macula-gitops GitOps agent
Documentation=https://github.com/macula-io/macula-gitops
Wants=network-online.target
After=network-online.target docker.service
Requires=docker.service

[Service]
Type=simple
ExecStart={exe} run --config {cfg}
Restart=on-failure
RestartSec=5s
KillSignal=SIGTERM
TimeoutStopSec=120s
StateDirectory=macula-gitops
ConfigurationDirectory=macula-gitops
Environment=RUST_LOG=info

[Install]
WantedBy=multi-user.target
"
    )
}

/// Write the unit (atomically). Enabling it is left to `systemctl enable --now`, printed by the CLI.
pub fn install_service(opts: &ServiceOptions) -> Result<PathBuf, DaemonError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { path, source }
    };
    let dir = opts.unit_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(".macula-gitops.service.tmp");
    std::fs::write(&tmp, service_unit(opts)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &opts.unit_path).map_err(io(&opts.unit_path))?;
    Ok(opts.unit_path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_daemon_with_the_config() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = ServiceOptions {
            exe: "/usr/local/bin/macula-gitops".into(),
            config: "/etc/macula gitops/agent.yaml".into(),
            unit_path: dir.path().join("macula-gitops.service"),
        };
        let path = install_service(&opts).expect("written");
        let text = std::fs::read_to_string(path).expect("read");
        assert!(text.contains(
            "ExecStart=/usr/local/bin/macula-gitops run --config '/etc/macula gitops/agent.yaml'\n"
        ));
        assert!(text.contains("After=network-online.target docker.service"));
        assert!(text.contains("KillSignal=SIGTERM"));
        assert!(text.contains("WantedBy=multi-user.target"));
    }
}
