//! The local cluster loop: a local commit under `clusters/<name>/` → the new artifact digest
//! under `latest` in the registry. Drives the real daemon (ref watcher on a local repository,
//! gix fetch, snapshot) with the real core: host stack, cluster observation through a recording
//! `kind` and a stand-in API server, the artifact packed and pushed to Debian's `docker-registry`
//! on 127.0.0.1. For comparison, in the same run, the host-service path of the same daemon: a
//! commit that changes a container's environment → the new container running. Run via
//! `tests/bench/oci-latency.sh`.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_gitops::daemon::{CoreReconciler, Daemon};
use macula_gitops::server::metrics::Metrics;
use support::cluster::recording_kind::RecordingKind;
use support::cluster::registry::DockerRegistry;
use support::cluster::standin_apiserver::StandIn;
use support::docker::{docker, Sandbox};
use support::git::{git, Repos};
use support::{image, unique_id};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn latest_layer(reg: &DockerRegistry, repo: &str) -> Option<String> {
    let a = reg.get(
        &format!("{repo}/manifests/latest"),
        macula_gitops::cluster::oci::MANIFEST_MEDIA_TYPE,
    );
    (a.status == 200).then(|| a.json()["layers"][0]["digest"].as_str().map(String::from))?
}

fn env_running(name: &str, value: &str) -> bool {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}|{{range .Config.Env}}{{.}};{{end}}",
        name,
    ]);
    out.starts_with("true|") && out.contains(&format!("MODE={value};"))
}

async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(label: &str, samples: &mut [f64]) {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    println!(
        "| {label:<44} | {} | {:.3} s | {:.3} s | {:.3} s |",
        samples.len(),
        percentile(samples, 0.5),
        percentile(samples, 0.95),
        samples[samples.len() - 1]
    );
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let id = unique_id();
    let cluster = format!("mgoci-{id}");
    // The daemon finds `kind` on PATH and puts nodes on this network (set before any thread).
    let rec = RecordingKind::new();
    std::env::set_var("PATH", rec.path_var());
    std::env::set_var("KIND_EXPERIMENTAL_DOCKER_NETWORK", format!("kind-{id}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(runs, &id, &cluster, &rec));
}

async fn run(runs: usize, id: &str, cluster: &str, rec: &RecordingKind) {
    let reg = DockerRegistry::start().expect("docker-registry installed (tests/run.sh)");
    let port = reg.addr.rsplit(':').next().expect("port");
    let mut g = Sandbox::new().await;
    let net = format!("kind-{id}");
    g.cleanup.network(&net);
    docker(&["network", "create", &net]);
    support::cluster::control_plane(&mut g, "dev", cluster, &net).await;
    let api = StandIn::start().await;
    rec.set_kubeconfig(cluster, &api.kubeconfig(cluster));
    let (fixture, sha) = support::cluster::flux_fixture();
    let host = format!("mgoci-{id}");
    let app = format!("mgoci-{id}-app");

    let r = Repos::new();
    r.write(
        "desired-state/hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [infra], clusters: [{cluster}]}}\n"),
    );
    // The registry service the nodes reach as kind-registry:5000 (busybox httpd stands in for
    // it; pushes go to docker-registry on 127.0.0.1) and a plain app for the host-service path.
    let compose = |mode: &str| {
        format!(
            "services:\n  registry:\n    image: {img}\n    container_name: mgoci-{id}-registry\n    command: httpd -f -p 5000 -h /\n    ports: ['127.0.0.2:{port}:5000']\n  app:\n    image: {img}\n    container_name: {app}\n    command: sleep 3600\n    environment: {{MODE: {mode}}}\n",
            img = image::busybox()
        )
    };
    r.write("desired-state/stacks/infra/compose.yaml", &compose("m0"));
    r.write(
        "desired-state/clusters.yaml",
        &format!(
            "registry: {{service: infra/registry, host: '{}', cluster: 'kind-registry:5000'}}\n\
             flux: {{version: v2.4.0, install_url: 'file://{}', sha256: '{sha}', source: oci}}\n\
             clusters:\n  {cluster}: {{image: '{}', nodes: [{{role: control-plane}}]}}\n",
            reg.addr,
            fixture.display(),
            image::busybox()
        ),
    );
    let c = format!("clusters/{cluster}");
    r.write(
        &format!("{c}/kustomization.yaml"),
        "resources: [app.yaml]\n",
    );
    let app_yaml = |v: usize| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{version: '{v}'}}\n"
        )
    };
    r.write(&format!("{c}/app.yaml"), &app_yaml(0));
    r.commit_push("c0");

    let state = tempfile::tempdir().expect("tmp");
    let mut cfg = support::daemon::config(&r.work.to_string_lossy(), state.path(), None);
    cfg.host = Some(host.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = Daemon::new(cfg, CoreReconciler::default(), Arc::new(Metrics::new())).expect("daemon");
    let h = tokio::spawn(async move {
        d.run(async move {
            let _ = rx.await;
        })
        .await
        .expect("daemon")
    });
    until(Duration::from_secs(120), "first artifact", || {
        latest_layer(&reg, &c).is_some()
    })
    .await;
    until(Duration::from_secs(60), "app", || env_running(&app, "m0")).await;

    let (mut cluster_samples, mut host_samples) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        // A change to a cluster app: commit → the new layer under `latest`.
        let before = latest_layer(&reg, &c);
        r.write(&format!("{c}/app.yaml"), &app_yaml(i));
        let t0 = Instant::now();
        git(&r.work, &["commit", "-qam", &format!("c{i}")]);
        until(Duration::from_secs(60), "new artifact", || {
            latest_layer(&reg, &c) != before
        })
        .await;
        cluster_samples.push(t0.elapsed().as_secs_f64());
        // A change to a host service: commit → the recreated container running.
        let mode = format!("m{i}");
        r.write("desired-state/stacks/infra/compose.yaml", &compose(&mode));
        let t0 = Instant::now();
        git(&r.work, &["commit", "-qam", &format!("h{i}")]);
        until(Duration::from_secs(60), "new container", || {
            env_running(&app, &mode)
        })
        .await;
        host_samples.push(t0.elapsed().as_secs_f64());
    }
    let _ = tx.send(());
    let _ = h.await;
    for cid in docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.macula.gitops.host={host}"),
    ])
    .split_whitespace()
    {
        docker(&["rm", "-f", cid]);
    }
    println!("| path (same daemon, same run)                 | commits | median | p95 | max |");
    println!("|----------------------------------------------|---------|--------|-----|-----|");
    summary(
        "local commit → new artifact digest (oci)",
        &mut cluster_samples,
    );
    summary("local commit → host container recreated", &mut host_samples);
}
