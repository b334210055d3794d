//! Push-to-running latency: `git push` (or a local commit) of a one-service change → the new
//! container running. Drives the real daemon (webhook receiver, local ref watcher, gix fetch,
//! snapshot) with the busybox reconciler from the tests (docker CLI rm + run), since the Docker
//! core is wired separately. Run via `tests/bench/push-latency.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{config, install_github_hook, test_id};
use common::docker::{inspect, BusyboxReconciler};
use common::{git, HttpGit, Repos};
use macula_gitops::daemon::Daemon;
use macula_gitops::server::metrics::Metrics;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn wait_running(name: &str, msg: &str) {
    loop {
        if let Some((m, _, true, _)) = inspect(name) {
            if m == msg {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn measure(label: &str, pushes: usize, local: bool) {
    let id = test_id();
    let r = Repos::new();
    r.write("desired-state/app.env", "MESSAGE=m0\n");
    r.commit_push("m0");
    let state = tempfile::tempdir().expect("tmp");
    let secret = state.path().join("secret");
    std::fs::write(&secret, "bench-secret").expect("write");
    let (rec, _guard) = BusyboxReconciler::new(&id);
    let name = rec.container();
    let http = HttpGit::start(r.bare.parent().expect("parent"), None);
    let url = if local {
        r.work.to_string_lossy().into_owned()
    } else {
        http.url("lab.git")
    };
    let cfg = config(&url, state.path(), Some(&secret));
    let addr = cfg.listen();
    let daemon = Daemon::new(cfg, rec, Arc::new(Metrics::new())).expect("daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        daemon
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("daemon");
    });
    wait_running(&name, "m0").await;
    if !local {
        install_github_hook(&r.bare, addr, &secret, &state.path().join("code"));
    }
    let mut samples = Vec::new();
    for i in 1..=pushes {
        let msg = format!("m{i}");
        r.write("desired-state/app.env", &format!("MESSAGE={msg}\n"));
        let t0 = Instant::now();
        if local {
            git(&r.work, &["commit", "-qam", &msg]);
        } else {
            r.commit_push(&msg);
        }
        wait_running(&name, &msg).await;
        samples.push(t0.elapsed().as_secs_f64());
    }
    let _ = tx.send(());
    let _ = h.await;
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    println!(
        "| {label:<22} | {pushes} | {:.3} s | {:.3} s | {:.3} s |",
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pushes: usize = std::env::var("PUSHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("| path                   | pushes | median | p95 | max |");
    println!("|------------------------|--------|--------|-----|-----|");
    measure("webhook (smart HTTP)", pushes, false).await;
    measure("local commit (notify)", pushes, true).await;
}
