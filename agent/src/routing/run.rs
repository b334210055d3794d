//! The foreground `macula-gitops routing run --file routing.yaml`: load, validate, start the
//! forwarders, publish DNS names, then serve until SIGINT/SIGTERM. SIGHUP re-reads the file
//! and applies it live (only changed forwards are touched).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dns;
use super::forward::{ForwardReport, Forwarder, ForwarderOptions};
use super::resolve::{DockerResolver, Resolve, StaticResolver};
use super::validate::{Resolved, TargetSpec};
use super::RoutingError;
use crate::desired::catalog::Catalog;
use crate::diag::Diagnostic;
use crate::input::Env;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub file: PathBuf,
    /// dotenv file for `${VAR}` interpolation (the process environment wins).
    pub env_file: Option<PathBuf>,
    /// The host's services, for `target: {service: ...}` (empty: only address targets).
    pub catalog: Catalog,
    pub forwarder: Option<ForwarderOptions>,
    /// Publish DNS names too (off: forwarders only, e.g. for benchmarks).
    pub dns: bool,
}

/// Load and validate `opts.file` into runnable specs.
pub fn load_resolved(opts: &RunOptions) -> Result<Resolved, RoutingError> {
    let env = Env::load(opts.env_file.as_deref()).map_err(|source| RoutingError::File {
        path: opts.env_file.clone().unwrap_or_default(),
        source,
    })?;
    check(&opts.file, &env, &opts.catalog).map_err(|diags| {
        let mut diagnostics = crate::diag::Diagnostics::default();
        for d in diags {
            diagnostics.push(d);
        }
        RoutingError::Invalid {
            file: opts.file.clone(),
            diagnostics,
        }
    })
}

/// `routing.yaml` at `path` → runnable specs, or every problem (sorted) — the routing half of
/// `validate` / `apply`, shaped like `desired::load_desired`.
pub fn check(path: &Path, env: &Env, catalog: &Catalog) -> Result<Resolved, Vec<Diagnostic>> {
    let (file, mut diags) = super::file::load(path, env);
    let Some(file) = file else {
        return Err(diags.into_sorted());
    };
    match super::validate::resolve(&file, catalog) {
        Ok(mut r) => {
            let mut warnings = diags.into_result()?;
            warnings.append(&mut r.warnings);
            r.warnings = warnings;
            Ok(r)
        }
        Err(d) => {
            diags.extend(d);
            Err(diags.into_sorted())
        }
    }
}

async fn resolver_for(r: &Resolved) -> Result<Arc<dyn Resolve>, RoutingError> {
    let needs_docker = r
        .forwards
        .iter()
        .any(|f| matches!(f.target, TargetSpec::Container { .. }));
    Ok(if needs_docker {
        let r = Arc::new(DockerResolver::connect().await?);
        r.spawn_invalidation();
        r
    } else {
        Arc::new(StaticResolver)
    })
}

async fn apply_all(fwd: &Forwarder, r: &Resolved, dns_on: bool) -> ForwardReport {
    // A no-op on Linux (all of 127.0.0.0/8 is on lo); `ifconfig lo0 alias` on macOS.
    for (address, name) in &r.loopback {
        if let Err(e) = super::bind::ensure_loopback_alias((*address).into()).await {
            tracing::error!(address = %address, name = %name, error = %e, "loopback address not available");
        }
    }
    let report = fwd.apply(&r.forwards).await;
    for e in &report.errors {
        tracing::error!(error = %e, "forward not started");
    }
    if dns_on {
        if let Some(spec) = &r.dns {
            let backends = dns::backends(spec);
            let d = dns::reconcile(spec, &backends).await;
            for e in &d.errors {
                tracing::error!(error = %e, "dns backend failed");
            }
        }
    }
    report
}

/// Run until SIGINT/SIGTERM.
pub async fn run_file(opts: RunOptions) -> Result<(), RoutingError> {
    use tokio::signal::unix::{signal, SignalKind};
    let resolved = load_resolved(&opts)?;
    let fwd = Forwarder::new(
        resolver_for(&resolved).await?,
        opts.forwarder.clone().unwrap_or_default(),
    );
    let report = apply_all(&fwd, &resolved, opts.dns).await;
    tracing::info!(
        started = report.started.len(),
        failed = report.failed,
        "routing running"
    );
    let sig = |k| {
        signal(k).map_err(|source| RoutingError::File {
            path: "signal".into(),
            source,
        })
    };
    let (mut term, mut hup) = (sig(SignalKind::terminate())?, sig(SignalKind::hangup())?);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => match load_resolved(&opts) {
                Ok(r) => {
                    let report = apply_all(&fwd, &r, opts.dns).await;
                    tracing::info!(started = report.started.len(), stopped = report.stopped.len(),
                        retargeted = report.retargeted.len(), failed = report.failed, "routing reloaded");
                }
                Err(e) => tracing::error!(error = %e, "reload refused; keeping the running forwards"),
            },
        }
    }
    fwd.shutdown().await;
    Ok(())
}

/// Blocking wrapper for the CLI.
pub fn run_blocking(opts: RunOptions) -> Result<(), RoutingError> {
    let rt = tokio::runtime::Runtime::new().map_err(|source| RoutingError::File {
        path: "tokio runtime".into(),
        source,
    })?;
    rt.block_on(run_file(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon runs these on a multi-threaded runtime (and holds the forwarder in an Arc
    /// shared with the HTTP server): their futures must be Send, the manager Send + Sync.
    #[allow(dead_code)]
    fn entry_points_are_send() {
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Forwarder>();
        let fwd = Forwarder::new(Arc::new(StaticResolver), ForwarderOptions::default());
        send(async move {
            fwd.apply(&[]).await;
            fwd.stats().await;
            fwd.shutdown().await;
        });
        send(async {
            let spec = crate::routing::DnsSpec::default();
            let backends = dns::backends(&spec);
            dns::reconcile(&spec, &backends).await;
        });
        send(run_file(RunOptions::default()));
    }

    #[test]
    fn load_resolved_reports_every_problem_or_returns_specs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("routing.yaml");
        std::fs::write(
            &file,
            "forwards:\n  - {name: a, listen: 127.0.0.3:80/tcp, target: {service: x/y, port: 1}}\n  - {name: a, listen: 127.0.0.3:80/tcp, target: {address: 127.0.0.1:1}, extra: 1}\n",
        )
        .expect("write");
        let opts = RunOptions {
            file: file.clone(),
            ..Default::default()
        };
        let err = load_resolved(&opts).expect_err("invalid").to_string();
        for want in [
            "4 problems",
            "forwards[1].extra: unknown key",
            "unknown service \"x/y\"",
        ] {
            assert!(err.contains(want), "{want:?} missing from {err}");
        }
        std::fs::write(
            &file,
            "forwards:\n  - {name: a, listen: 127.0.0.3:80/udp, target: {address: \"127.0.0.1:${PORT:-53}\"}}\n",
        )
        .expect("write");
        let r = load_resolved(&opts).expect("valid");
        assert_eq!(r.forwards[0].target.to_string(), "127.0.0.1:53");
    }
}
