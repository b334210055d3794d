//! Push-to-running latency: `git push` (or a local commit) of a one-service change → the new
//! container running. Drives the real daemon (webhook receiver, local ref watcher, gix fetch,
//! snapshot) with the real Docker core (a one-service compose stack), and, for comparison, with
//! the tests' minimal reconciler (docker CLI rm + run), and the floor in the same run: the same
//! push with the container replaced by hand at once. Run via `tests/bench/push-latency.sh`.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_gitops::daemon::{CoreReconciler, Daemon, Reconciler};
use macula_gitops::server::metrics::Metrics;
use support::daemon::{config, install_github_hook};
use support::git::{git, HttpGit, Repos};
use support::image;
use support::reconciler::{inspect, BusyboxReconciler};
use support::unique_id;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn docker_out(args: &[&str]) -> String {
    let o = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The container runs with `MODE=<msg>` (core) or the message label (minimal reconciler).
fn is_running(name: &str, msg: &str, core: bool) -> bool {
    if !core {
        return matches!(inspect(name), Some((m, _, true, _)) if m == msg);
    }
    let out = docker_out(&[
        "inspect",
        "-f",
        "{{.State.Running}}|{{range .Config.Env}}{{.}};{{end}}",
        name,
    ]);
    out.starts_with("true|") && out.contains(&format!("MODE={msg};"))
}

async fn wait_running(name: &str, msg: &str, core: bool) {
    while !is_running(name, msg, core) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write_state(r: &Repos, id: &str, msg: &str, core: bool) {
    if core {
        r.write(
            "desired-state/hosts.yaml",
            "hosts:\n  default: {stacks: [s]}\n",
        );
        r.write(
            "desired-state/stacks/s/compose.yaml",
            &format!(
                "services:\n  app:\n    image: {}\n    container_name: mgsrc-{id}-core\n    command: sleep 3600\n    environment: {{MODE: {msg}}}\n",
                image::busybox()
            ),
        );
    } else {
        r.write("desired-state/app.env", &format!("MESSAGE={msg}\n"));
    }
}

async fn measure<R: Reconciler>(label: &str, pushes: usize, local: bool, core: Option<R>) -> f64 {
    let id = unique_id();
    let (rec, _guard) = BusyboxReconciler::new(&id);
    let is_core = core.is_some();
    let name = if is_core {
        format!("mgsrc-{id}-core")
    } else {
        rec.container()
    };
    let host = format!("mgsrc-{id}");
    let r = Repos::new();
    write_state(&r, &id, "m0", is_core);
    r.commit_push("m0");
    let state = tempfile::tempdir().expect("tmp");
    let secret = state.path().join("secret");
    std::fs::write(&secret, "bench-secret").expect("write");
    let http = HttpGit::start(r.bare.parent().expect("parent"), None);
    let url = if local {
        r.work.to_string_lossy().into_owned()
    } else {
        http.url("lab.git")
    };
    let mut cfg = config(&url, state.path(), Some(&secret));
    cfg.host = Some(host.clone());
    let addr = cfg.listen();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = rx.await;
    };
    let h = match core {
        Some(c) => {
            let d = Daemon::new(cfg, c, Arc::new(Metrics::new())).expect("daemon");
            tokio::spawn(async move { d.run(stop).await.expect("daemon") })
        }
        None => {
            let d = Daemon::new(cfg, rec, Arc::new(Metrics::new())).expect("daemon");
            tokio::spawn(async move { d.run(stop).await.expect("daemon") })
        }
    };
    wait_running(&name, "m0", is_core).await;
    if !local {
        install_github_hook(&r.bare, addr, &secret, &state.path().join("code"));
    }
    let mut samples = Vec::new();
    for i in 1..=pushes {
        let msg = format!("m{i}");
        write_state(&r, &id, &msg, is_core);
        let t0 = Instant::now();
        if local {
            git(&r.work, &["commit", "-qam", &msg]);
        } else {
            r.commit_push(&msg);
        }
        wait_running(&name, &msg, is_core).await;
        samples.push(t0.elapsed().as_secs_f64());
    }
    let _ = tx.send(());
    let _ = h.await;
    // The core's containers carry the host label; remove them like the tests do.
    let ids = docker_out(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.macula.gitops.host={host}"),
    ]);
    for c in ids.split_whitespace() {
        docker_out(&["rm", "-f", c]);
    }
    // And its networks (a default network left behind holds a /16 of the engine's pool).
    let nets = docker_out(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.macula.gitops.host={host}"),
    ]);
    for n in nets.split_whitespace() {
        docker_out(&["network", "rm", n]);
    }
    row(label, samples)
}

/// Print one table row; the median.
fn row(label: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let median = percentile(&samples, 0.5);
    println!(
        "| {label:<36} | {} | {median:.3} s | {:.3} s | {:.3} s |",
        samples.len(),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
    median
}

/// The floor no agent can beat: the same `git push` (no hook) followed at once by the engine
/// replacing the container by hand (`docker rm -f` + `docker run -d`), timed the same way.
async fn floor(pushes: usize) -> f64 {
    let id = unique_id();
    let name = format!("mgsrc-{id}-floor");
    let label = format!("io.macula.gitops.host=mgsrc-{id}");
    let run = |msg: &str| {
        docker_out(&["rm", "-f", &name]);
        let env = format!("MODE={msg}");
        let args = ["run", "-d", "--name", &name, "--label", &label, "-e", &env];
        docker_out(&[&args[..], &[image::busybox(), "sleep", "3600"]].concat());
    };
    let r = Repos::new();
    write_state(&r, &id, "m0", true);
    r.commit_push("m0");
    run("m0");
    let mut samples = Vec::new();
    for i in 1..=pushes {
        let msg = format!("m{i}");
        write_state(&r, &id, &msg, true);
        let t0 = Instant::now();
        r.commit_push(&msg);
        run(&msg);
        wait_running(&name, &msg, true).await;
        samples.push(t0.elapsed().as_secs_f64());
    }
    docker_out(&["rm", "-f", &name]);
    row("floor: git push + docker rm -f/run -d", samples)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pushes: usize = std::env::var("PUSHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("| path                                 | pushes | median | p95 | max |");
    println!("|--------------------------------------|--------|--------|-----|-----|");
    let webhook = measure(
        "webhook (smart HTTP), Docker core",
        pushes,
        false,
        Some(CoreReconciler::default()),
    )
    .await;
    let local = measure(
        "local commit (notify), Docker core",
        pushes,
        true,
        Some(CoreReconciler::default()),
    )
    .await;
    let floor = floor(pushes).await;
    measure::<CoreReconciler>("webhook, minimal docker rm+run", pushes, false, None).await;
    measure::<CoreReconciler>("local commit, minimal docker rm+run", pushes, true, None).await;
    println!(
        "\nmedian / floor: webhook {:.2}×, local commit {:.2}×",
        webhook / floor,
        local / floor
    );
}
