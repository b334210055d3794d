//! CLI for the daemon side: `run`, `reconcile`, `suspend`, `resume`, `status`,
//! `install-service` (and hidden `source-sync` for benchmarks). main.rs calls [`main`]; the
//! lead may fold [`DaemonCommand`] into the full CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use macula_gitops::config::{AgentConfig, SourceConfig};
use macula_gitops::daemon::{self, DaemonArgs, ServiceOptions};
use macula_gitops::server::client;
use macula_gitops::source::{Source, SourceSpec};

#[derive(Parser, Debug)]
#[command(name = "macula-gitops", version, about = "Per-host GitOps agent")]
pub struct Cli {
    /// Agent config file (default /etc/macula-gitops/agent.yaml as root, XDG config dir otherwise).
    #[arg(long, global = true, env = "MACULA_GITOPS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Subcommand, Debug)]
#[command(rename_all = "kebab-case")]
pub enum DaemonCommand {
    /// Run the GitOps daemon: fetch, watch, reconcile.
    Run(RunArgs),
    /// Ask the running daemon to fetch and reconcile now.
    Reconcile(ClientArgs),
    /// Stop applying changes (fetching continues); survives restarts.
    Suspend(ClientArgs),
    /// Apply changes again.
    Resume(ClientArgs),
    /// Show the daemon's status.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write a systemd unit for the daemon.
    InstallService {
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

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Repository URL (https, ssh, file://, or a local path).
    #[arg(long, env = "MACULA_GITOPS_URL")]
    pub url: Option<String>,
    /// Branch, tag, or full commit id.
    #[arg(long = "ref", env = "MACULA_GITOPS_REF")]
    pub reference: Option<String>,
    /// Directory in the repo that holds desired-state/.
    #[arg(long, env = "MACULA_GITOPS_PATH")]
    pub path: Option<String>,
    /// Poll interval (e.g. 1m, 30s; 0s disables polling).
    #[arg(long, env = "MACULA_GITOPS_INTERVAL")]
    pub interval: Option<String>,
    /// Listener for webhooks and the local API (default 127.0.0.1:9470).
    #[arg(long, env = "MACULA_GITOPS_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "MACULA_GITOPS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Host name selecting this host's slice of the repo.
    #[arg(long, env = "MACULA_GITOPS_HOST")]
    pub host: Option<String>,
    /// File holding the webhook secret.
    #[arg(long, env = "MACULA_GITOPS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Cron expression of the apply window (sec min hour dom mon dow).
    #[arg(long, env = "MACULA_GITOPS_APPLY_WINDOW")]
    pub apply_window: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct ClientArgs {
    /// Daemon address (default: `listen` from the config file, else 127.0.0.1:9470).
    #[arg(long, env = "MACULA_GITOPS_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Output {
    Text,
    Json,
}

fn daemon_addr(config: &Option<PathBuf>, c: &ClientArgs) -> anyhow::Result<SocketAddr> {
    if let Some(a) = c.listen {
        return Ok(a);
    }
    let path = config
        .clone()
        .unwrap_or_else(macula_gitops::config::default_config_path);
    Ok(AgentConfig::load(&path, config.is_some())?.listen())
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(dispatch(cli))
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.clone();
    match cli.command {
        DaemonCommand::Run(a) => {
            daemon::run(DaemonArgs {
                config,
                url: a.url,
                reference: a.reference,
                path: a.path,
                interval: a.interval,
                listen: a.listen,
                state_dir: a.state_dir,
                host: a.host,
                webhook_secret_file: a.webhook_secret_file,
                apply_window: a.apply_window,
            })
            .await
        }
        DaemonCommand::Reconcile(c) => {
            println!("{}", client::reconcile(daemon_addr(&config, &c)?).await?);
            Ok(())
        }
        DaemonCommand::Suspend(c) => {
            println!("{}", client::suspend(daemon_addr(&config, &c)?).await?);
            Ok(())
        }
        DaemonCommand::Resume(c) => {
            println!("{}", client::resume(daemon_addr(&config, &c)?).await?);
            Ok(())
        }
        DaemonCommand::Status { client: c, output } => {
            let json = matches!(output, Output::Json);
            let text = client::status_text(daemon_addr(&config, &c)?, json).await?;
            print!("{text}");
            if json {
                println!();
            }
            Ok(())
        }
        DaemonCommand::InstallService { unit_path, exe } => {
            let exe = match exe {
                Some(e) => e,
                None => std::env::current_exe().context("locating this executable")?,
            };
            let config = config.unwrap_or_else(macula_gitops::config::default_config_path);
            let path = daemon::install_service(&ServiceOptions {
                exe,
                config,
                unit_path,
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
                url,
                reference,
                depth,
                ..Default::default()
            })?;
            let started = std::time::Instant::now();
            let out =
                tokio::task::spawn_blocking(move || Source::new(spec, &state_dir).sync()).await??;
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
