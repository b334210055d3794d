//! CLI for the GitOps daemon: the git flags of `run` ([`RunArgs`], flattened into main's `run`),
//! and `reconcile`, `suspend`, `resume`, `status`, `install-service` (plus hidden
//! `source-sync` for benchmarks) as [`DaemonCommand`], flattened into main's subcommands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use macula_gitops::config::{AgentConfig, Overrides, SourceConfig};
use macula_gitops::daemon::{self, ServiceOptions};
use macula_gitops::server::{auth, client};
use macula_gitops::source::{Source, SourceSpec};

#[derive(Subcommand, Debug)]
#[command(rename_all = "kebab-case")]
pub enum DaemonCommand {
    /// Ask the running daemon to fetch and reconcile now.
    Reconcile {
        #[command(flatten)]
        client: ClientArgs,
        /// Roll the current revision out again even if it was rolled back (a plain reconcile
        /// keeps the rolled-back services on the last good revision).
        #[arg(long)]
        force: bool,
    },
    /// Stop applying changes (fetching continues); survives restarts.
    Suspend(ClientArgs),
    /// Apply changes again.
    Resume(ClientArgs),
    /// Show the daemon's status.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short, value_enum, default_value_t = StatusOutput::Text)]
        output: StatusOutput,
    },
    /// Write a systemd unit for the daemon.
    InstallService {
        /// Config file the unit passes to `run --config`.
        #[arg(long, env = "MACULA_GITOPS_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "/etc/systemd/system/macula-gitops.service")]
        unit_path: PathBuf,
        /// Binary the unit runs (default: this executable).
        #[arg(long)]
        exe: Option<PathBuf>,
    },
    /// Fetch and snapshot once, print the commit (benchmarks, debugging).
    #[command(hide = true)]
    SourceSync {
        #[arg(long)]
        url: String,
        #[arg(long = "ref")]
        reference: Option<String>,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        depth: Option<u32>,
    },
}

/// Source and listener flags of `run` (the host, state dir, desired state, interval and prune
/// flags are main's).
#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// Agent config file (default /etc/macula-gitops/agent.yaml as root, XDG config dir otherwise).
    #[arg(long, env = "MACULA_GITOPS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository URL (https, ssh, file://, or a local path).
    #[arg(long, env = "MACULA_GITOPS_URL")]
    pub url: Option<String>,
    /// Branch, tag, or full commit id.
    #[arg(long = "ref", env = "MACULA_GITOPS_REF")]
    pub reference: Option<String>,
    /// Directory in the repo that holds desired-state/.
    #[arg(long, env = "MACULA_GITOPS_PATH")]
    pub path: Option<String>,
    /// Listener for webhooks and the local API (default 127.0.0.1:9470).
    #[arg(long, env = "MACULA_GITOPS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// File holding the webhook secret.
    #[arg(long, env = "MACULA_GITOPS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Cron expression of the apply window (sec min hour dom mon dow).
    #[arg(long, env = "MACULA_GITOPS_APPLY_WINDOW")]
    pub apply_window: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct ClientArgs {
    /// Agent config file, read for `listen`.
    #[arg(long, env = "MACULA_GITOPS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Daemon address (default: `listen` from the config file, else 127.0.0.1:9470).
    #[arg(long, env = "MACULA_GITOPS_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StatusOutput {
    Text,
    Json,
}

fn load_config(c: &ClientArgs) -> anyhow::Result<AgentConfig> {
    let path = c
        .config
        .clone()
        .unwrap_or_else(macula_gitops::config::default_config_path);
    Ok(AgentConfig::load(&path, c.config.is_some())?)
}

fn daemon_addr(c: &ClientArgs) -> anyhow::Result<SocketAddr> {
    match c.listen {
        Some(a) => Ok(a),
        None => Ok(load_config(c)?.listen()),
    }
}

/// The daemon's address and the control token it wrote to its state dir (`--state-dir`, else
/// the config's `state_dir`, else the default).
fn control(c: &ClientArgs, state_dir: Option<&Path>) -> anyhow::Result<(SocketAddr, String)> {
    let dir = match state_dir {
        Some(d) => d.to_path_buf(),
        None => load_config(c)?.state_dir(),
    };
    let token = auth::read_token(&dir).with_context(|| {
        "reading the daemon's control token (run as the agent's user, or pass --state-dir)"
    })?;
    Ok((daemon_addr(c)?, token))
}

impl RunArgs {
    /// Lay these flags into the top settings layer.
    pub fn lay_over(&self, o: &mut Overrides) {
        o.config = self.config.clone().or(o.config.take());
        o.url = self.url.clone();
        o.reference = self.reference.clone();
        o.path = self.path.clone();
        o.listen = self.listen;
        o.webhook_secret_file = self.webhook_secret_file.clone();
        o.apply_window = self.apply_window.clone();
    }
}

pub async fn dispatch(command: &DaemonCommand, state_dir: Option<&Path>) -> anyhow::Result<()> {
    match command {
        DaemonCommand::Reconcile { client: c, force } => {
            let (addr, token) = control(c, state_dir)?;
            println!("{}", client::reconcile(addr, &token, *force).await?);
            Ok(())
        }
        DaemonCommand::Suspend(c) => {
            let (addr, token) = control(c, state_dir)?;
            println!("{}", client::suspend(addr, &token).await?);
            Ok(())
        }
        DaemonCommand::Resume(c) => {
            let (addr, token) = control(c, state_dir)?;
            println!("{}", client::resume(addr, &token).await?);
            Ok(())
        }
        DaemonCommand::Status { client: c, output } => {
            let json = matches!(output, StatusOutput::Json);
            let text = client::status_text(daemon_addr(c)?, json).await?;
            print!("{text}");
            if json {
                println!();
            }
            Ok(())
        }
        DaemonCommand::InstallService {
            config,
            unit_path,
            exe,
        } => {
            let exe = match exe {
                Some(e) => e.clone(),
                None => std::env::current_exe().context("locating this executable")?,
            };
            let config = config
                .clone()
                .unwrap_or_else(macula_gitops::config::default_config_path);
            let path = daemon::install_service(&ServiceOptions {
                exe,
                config,
                unit_path: unit_path.clone(),
            })?;
            println!("wrote {}", path.display());
            println!(
                "enable with: systemctl daemon-reload && systemctl enable --now macula-gitops"
            );
            Ok(())
        }
        DaemonCommand::SourceSync {
            url,
            reference,
            state_dir,
            depth,
        } => {
            let spec = SourceSpec::from_config(&SourceConfig {
                url: url.clone(),
                reference: reference.clone(),
                depth: *depth,
                ..Default::default()
            })?;
            let started = std::time::Instant::now();
            let dir = state_dir.clone();
            let out = tokio::task::spawn_blocking(move || Source::new(spec, &dir).sync()).await??;
            println!(
                "{} {:.3}s (fetch {:.3}s)",
                out.commit,
                started.elapsed().as_secs_f64(),
                out.fetch_duration.as_secs_f64()
            );
            Ok(())
        }
    }
}
