//! The `macula-gitops` command line. Thin: parses flags, calls the library, prints, exits.
#![forbid(unsafe_code)]

mod cli_daemon;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use macula_gitops::config::{AgentConfig, Overrides};
use macula_gitops::diag::Diagnostic;
use macula_gitops::engine::DockerEngine;
use macula_gitops::outcome::Outcome;
use macula_gitops::reconcile::{self, ReconcileError, ReconcileOptions};

#[derive(Parser)]
#[command(
    name = "macula-gitops",
    version,
    about = "Per-host GitOps reconciler: Docker services, loopback routing, kind clusters"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// The desired-state directory (default: this repository's own desired-state/).
    #[arg(long, global = true, env = "MACULA_GITOPS_DESIRED_STATE")]
    desired_state: Option<PathBuf>,
    /// Host name selecting the slice in hosts.yaml (default: this machine's hostname).
    #[arg(long, global = true, env = "MACULA_GITOPS_HOST")]
    host: Option<String>,
    /// dotenv file for ${VAR} interpolation (default: <desired-state>/.env, else .env.example).
    #[arg(long, global = true, env = "MACULA_GITOPS_ENV_FILE")]
    env_file: Option<PathBuf>,
    /// Where the agent keeps its state (default: /var/lib/macula-gitops as root, XDG state dir otherwise).
    #[arg(long, global = true, env = "MACULA_GITOPS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where read-write relative binds keep their data (default: `data_root` in the agent
    /// config, else /var/lib/macula-gitops-data as root, $XDG_DATA_HOME/macula-gitops otherwise).
    #[arg(long, global = true, env = "MACULA_GITOPS_DATA_ROOT")]
    data_root: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "MACULA_GITOPS_LOG_JSON")]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check the desired state for this host and report every problem.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what apply would change.
    Diff {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Exit with status 2 when there are changes.
        #[arg(long)]
        exit_code: bool,
        #[command(flatten)]
        prune: PruneArgs,
        /// The running daemon whose forwards are compared (default: `listen` from the agent
        /// config, as `run` layers it).
        #[arg(long, env = "MACULA_GITOPS_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Converge the host to the desired state once.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        prune: PruneArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// App images from desired-state/images.yaml.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Flux releases.
    Flux {
        #[command(subcommand)]
        command: FluxCommand,
    },
    /// Loopback routing on its own: forwarders and DNS names from a routing file.
    Routing {
        #[command(subcommand)]
        command: RoutingCommand,
    },
    /// Run as a daemon on a git repository (--url, or `source:` in the config) or a local
    /// directory (--desired-state, or `desired_state:`): reconcile now, on every commit or saved
    /// edit, on drift, on webhooks and every interval; serve /status, /metrics and control.
    Run {
        #[command(flatten)]
        prune: PruneArgs,
        /// Full reconcile (local directory) / poll (git) interval (default 1m; 0s disables it).
        #[arg(long, value_parser = humantime::parse_duration, env = "MACULA_GITOPS_INTERVAL")]
        interval: Option<Duration>,
        #[command(flatten)]
        source: cli_daemon::RunArgs,
    },
    /// The stacks' data directories (read-write relative binds): list, remove.
    Data {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: DataCommand,
    },
    #[command(flatten)]
    Daemon(cli_daemon::DaemonCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// List every data directory under the data root.
    Ls,
    /// Delete a stack's data directory (or all of the stack's data): the only way data goes.
    Rm {
        stack: String,
        /// Path as written in the bind, relative to the stack directory (`data`, `conf/app.conf`).
        path: Option<String>,
        /// Confirm the deletion (nothing is deleted without it).
        #[arg(long)]
        yes: bool,
    },
}

/// The agent config whose `policy:` (privileges the host grants) and `data_root` every command
/// uses, so `validate` on a laptop refuses exactly what `apply` on the host would.
#[derive(Args, Clone, Default)]
struct ConfigArg {
    /// Agent config file (default /etc/macula-gitops/agent.yaml as root, XDG config dir otherwise).
    #[arg(long, env = "MACULA_GITOPS_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RoutingCommand {
    /// Serve the forwards and publish the names until SIGINT/SIGTERM; SIGHUP re-reads the file.
    Run {
        /// Routing file (default: <desired-state>/routing.yaml). Service targets resolve
        /// against the host's stacks.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FluxCommand {
    /// Print the sha256 of a release's install.yaml for `flux.sha256`, after checking it
    /// against the release's checksums file.
    Digest {
        /// e.g. v2.9.5
        version: String,
        /// Default: the GitHub release's install.yaml of VERSION.
        #[arg(long)]
        install_url: Option<String>,
        /// Deadline of each download.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build images (all, or the NAMEs given) with the engine; the tag carries the context's hash.
    Build {
        /// Push to the local registry after building.
        #[arg(long)]
        push: bool,
        names: Vec<String>,
    },
}

#[derive(Args, Clone)]
struct PruneArgs {
    /// Keep managed containers that are no longer desired.
    #[arg(long)]
    no_prune: bool,
    /// Also remove managed volumes that are no longer desired (data loss: never implied).
    #[arg(long)]
    prune_volumes: bool,
    /// Allow an empty desired state to remove every managed container.
    #[arg(long)]
    allow_empty: bool,
    /// Delete kind clusters this host no longer wants (destroys their state).
    #[arg(long)]
    prune_clusters: bool,
    /// How long to wait for a dependency to become healthy (default 2m, or
    /// `reconcile.health_timeout` in the agent config).
    #[arg(long, value_parser = humantime::parse_duration, env = "MACULA_GITOPS_HEALTH_TIMEOUT")]
    health_timeout: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

/// Flags and environment (clap reads both, flags first) as the top settings layer.
fn overrides(g: &Global, config: Option<&PathBuf>, p: Option<&PruneArgs>) -> Overrides {
    let given = |b: bool| b.then_some(true);
    let mut o = Overrides {
        config: config.cloned(),
        host: g.host.clone(),
        state_dir: g.state_dir.clone(),
        data_root: g.data_root.clone(),
        env_file: g.env_file.clone(),
        desired_state: g.desired_state.clone(),
        ..Default::default()
    };
    if let Some(p) = p {
        o.prune = p.no_prune.then_some(false);
        o.prune_volumes = given(p.prune_volumes);
        o.allow_empty = given(p.allow_empty);
        o.prune_clusters = given(p.prune_clusters);
        o.health_timeout = p.health_timeout;
    }
    o
}

/// The core's options from the layered settings (`AgentConfig::resolve`).
fn options(
    g: &Global,
    config: Option<&PathBuf>,
    p: Option<&PruneArgs>,
) -> anyhow::Result<ReconcileOptions> {
    let cfg = AgentConfig::resolve(&overrides(g, config, p))?;
    Ok(ReconcileOptions::from_config(&cfg)?)
}

fn print_invalid(diags: &[Diagnostic]) {
    let result = ReconcileError::Invalid(diags.to_vec()).into_result();
    eprint!("{}", Outcome::stopped("", None, result).text().err);
}

/// Map a reconcile error to output and an exit code (1: invalid or failed).
fn report_error(e: ReconcileError) -> ExitCode {
    match e {
        ReconcileError::Invalid(d) => print_invalid(&d),
        other => eprintln!("error: {other}"),
    }
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async_main());
    // A fetch abandoned at shutdown may still sit in a blocking thread; do not wait for it.
    // Its ssh is in a process group of its own (no terminal signal reaches it): end it here,
    // which also ends the thread's read.
    macula_gitops::source::stop_ssh();
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    // Everything the agent writes (state, snapshots, cache, copies) is its own: 0700/0600
    // unless a path is opened up on purpose (see `state::materialise`, `data::ensure`).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    init_tracing(cli.global.log_json);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MACULA_GITOPS_LOG")
        .unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate { config } => {
            let o = options(g, config.config.as_ref(), None)?;
            match reconcile::desired(&o) {
                Ok(hd) => {
                    for w in hd.warnings() {
                        eprintln!("warning: {w}");
                    }
                    let d = &hd.state;
                    let (forwards, names) = hd
                        .routing
                        .as_ref()
                        .map(|r| {
                            (
                                r.forwards.len(),
                                r.dns.as_ref().map_or(0, |d| d.names.len()),
                            )
                        })
                        .unwrap_or_default();
                    println!(
                        "ok: {} services in {} stacks, {} forwards, {} DNS names, {} clusters for host {} (entry {:?})",
                        d.services.len(),
                        d.selection.stacks.len(),
                        forwards,
                        names,
                        d.selection.clusters.len(),
                        d.host(),
                        d.selection.entry
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report_error(e)),
            }
        }
        Command::Diff {
            config,
            output,
            exit_code,
            prune,
            listen,
        } => {
            let o = options(g, config.config.as_ref(), Some(prune))?;
            let engine = DockerEngine::connect().await?;
            match reconcile::diff(&engine, &o).await {
                Ok((hd, _, plan)) => {
                    for w in hd.warnings() {
                        eprintln!("warning: {w}");
                    }
                    let clusters = reconcile::diff_clusters(&hd, &o).await;
                    // Forwards live in the daemon: compare with the one at the configured address.
                    let listen = match listen {
                        Some(a) => *a,
                        None => {
                            macula_gitops::config::AgentConfig::load_from(config.config.as_deref())?
                                .listen()
                        }
                    };
                    let routing = match &hd.routing {
                        Some(r) => macula_gitops::routing::diff::observe(r, Some(listen)).await,
                        None => Default::default(),
                    };
                    match output {
                        Output::Json => {
                            let all = serde_json::json!({"steps": plan.steps, "clusters": clusters, "routing": routing});
                            println!("{}", serde_json::to_string_pretty(&all)?)
                        }
                        Output::Text if clusters.is_empty() && routing.is_empty() => {
                            print!("{plan}")
                        }
                        Output::Text => {
                            for s in &plan.steps {
                                println!("{s}");
                            }
                            print!("{clusters}{routing}");
                        }
                    }
                    let changed =
                        !plan.is_empty() || clusters.has_changes() || routing.has_changes();
                    Ok(if *exit_code && changed {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    })
                }
                Err(e) => Ok(report_error(e)),
            }
        }
        Command::Apply {
            config,
            prune,
            output,
        } => {
            let o = options(g, config.config.as_ref(), Some(prune))?;
            let res = reconcile::reconcile(&o).await;
            let outcome = reconcile::outcome_of(&o.host, o.revision.clone(), res);
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
                Output::Text => {
                    let text = outcome.text();
                    print!("{}", text.out);
                    eprint!("{}", text.err);
                }
            }
            Ok(if outcome.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Images {
            command: ImagesCommand::Build { push, names },
        } => {
            let o = options(g, None, None)?;
            let hd = match reconcile::desired(&o) {
                Ok(hd) => hd,
                Err(e) => return Ok(report_error(e)),
            };
            let mut progress = |line: &str| eprintln!("{line}");
            match macula_gitops::cluster::run::images_host(
                &hd.state,
                &hd.env,
                names,
                *push,
                &mut progress,
            )
            .await
            {
                Ok(r) => {
                    for i in &r.images {
                        println!("{i}");
                    }
                    for e in &r.errors {
                        eprintln!("failed: {e}");
                    }
                    println!("{} failed, {} tried", r.failed, r.tried);
                    Ok(if r.failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                Err(d) => {
                    print_invalid(&d);
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Run {
            prune,
            interval,
            source,
        } => {
            let mut o = overrides(g, source.config.as_ref(), Some(prune));
            o.interval = *interval;
            source.lay_over(&mut o);
            macula_gitops::daemon::run(AgentConfig::resolve(&o)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Flux {
            command:
                FluxCommand::Digest {
                    version,
                    install_url,
                    timeout,
                },
        } => {
            use macula_gitops::cluster::release;
            let install_url = install_url
                .clone()
                .unwrap_or_else(|| release::default_install_url(version));
            let rel = release::Release {
                checksums_url: release::checksums_url_for(&install_url, version),
                version: version.clone(),
                install_url,
                pin: None,
            };
            match release::digest(&rel, *timeout).await {
                Ok(sha) => {
                    eprintln!(
                        "{} matches {}; pin it as flux.sha256:",
                        rel.install_url, rel.checksums_url
                    );
                    println!("{sha}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Routing {
            command: RoutingCommand::Run { file },
        } => {
            let o = options(g, None, None)?;
            let env = reconcile::env_for(o.env_file.as_ref(), &o.desired_root)?;
            let catalog = macula_gitops::desired::load_desired(&o.desired_root, &o.host, &env)
                .map(|d| d.catalog())
                .unwrap_or_default();
            let file = file
                .clone()
                .unwrap_or_else(|| o.desired_root.join("routing.yaml"));
            let env_file = o
                .env_file
                .clone()
                .or_else(|| Some(o.desired_root.join(".env")));
            let opts = macula_gitops::routing::RunOptions {
                file,
                env_file,
                catalog,
                forwarder: None,
                dns: true,
            };
            macula_gitops::routing::run_file(opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data { config, command } => {
            let root =
                AgentConfig::resolve(&overrides(g, config.config.as_ref(), None))?.data_root();
            match command {
                DataCommand::Ls => {
                    for (name, dir) in macula_gitops::data::list(&root)? {
                        println!("{name}\t{}", dir.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                DataCommand::Rm { stack, path, yes } => {
                    let what = match path {
                        Some(p) => format!("{stack}/{p}"),
                        None => format!("all data of stack {stack}"),
                    };
                    if !yes {
                        eprintln!("refusing to delete {what} under {} without --yes (stop the service first: a running container keeps writing to it)", root.display());
                        return Ok(ExitCode::from(1));
                    }
                    let dir = macula_gitops::data::remove(&root, stack, path.as_deref())?;
                    println!("removed {}", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Daemon(d) => {
            cli_daemon::dispatch(d, g.state_dir.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
