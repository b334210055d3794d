//! Run the forwarders (and DNS backends) of a routing.yaml in the foreground until SIGINT —
//! what `macula-gitops routing run --file` does, usable before the CLI is wired and by
//! `tests/bench/forward.sh`.
//!
//!     cargo run --release --example routing_run -- routing.yaml [--no-dns] [--no-splice]

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: routing_run <routing.yaml> [--no-dns] [--no-splice]");
        std::process::exit(2);
    };
    let opts = macula_gitops::routing::RunOptions {
        file: file.into(),
        dns: !args.iter().any(|a| a == "--no-dns"),
        forwarder: Some(macula_gitops::routing::forward::ForwarderOptions {
            splice: !args.iter().any(|a| a == "--no-splice"),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Err(e) = macula_gitops::routing::run_blocking(opts) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
