//! Run the daemon in-process against real repos and a real container reconciler.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use macula_gitops::config::{AgentConfig, SourceConfig, WebhookConfig};
use macula_gitops::daemon::Daemon;
use macula_gitops::server::client;
use macula_gitops::server::metrics::Metrics;
use macula_gitops::server::status::Status;

use super::docker::Cleanup;
use super::git::Repos;
use super::reconciler::BusyboxReconciler;
use super::unique_id;

/// What a daemon test starts from: a repo whose `desired-state/app.env` is `MESSAGE=<msg>`,
/// committed and pushed (`c1`), a state dir, and the id of the test's reconciler.
pub struct Scenario {
    pub id: String,
    pub r: Repos,
    pub c1: String,
    pub state: tempfile::TempDir,
}

impl Scenario {
    pub fn new(msg: &str) -> Self {
        let r = Repos::new();
        r.write("desired-state/app.env", &format!("MESSAGE={msg}\n"));
        let c1 = r.commit_push(msg);
        Self {
            id: unique_id(),
            r,
            c1,
            state: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A reconciler for this scenario (the same container across restarts) and the guard
    /// that removes its container.
    pub fn reconciler(&self) -> (BusyboxReconciler, Cleanup) {
        BusyboxReconciler::new(&self.id)
    }
}

pub struct Running {
    pub addr: SocketAddr,
    /// The control token the daemon wrote to its state dir.
    pub token: String,
    /// The daemon's metrics, readable after `stop` too.
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("daemon task");
        }
    }
}

/// Config for a daemon on a free port, no polling (triggers must do the work).
pub fn config(url: &str, state: &Path, secret: Option<&Path>) -> AgentConfig {
    AgentConfig {
        host: Some("test-host".into()),
        state_dir: Some(state.to_path_buf()),
        listen: Some(
            format!("127.0.0.1:{}", super::free_port())
                .parse()
                .expect("addr"),
        ),
        source: Some(SourceConfig {
            url: url.into(),
            reference: Some("main".into()),
            interval: Some("0s".into()),
            ..Default::default()
        }),
        webhook: WebhookConfig {
            secret_file: secret.map(Path::to_path_buf),
            max_body: Some(4096),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub async fn start(cfg: AgentConfig, rec: BusyboxReconciler) -> Running {
    let addr = cfg.listen();
    let http = client::http_client();
    let state_dir = cfg.state_dir();
    let metrics = Arc::new(Metrics::new());
    let daemon = Daemon::new(cfg, rec, metrics.clone()).expect("daemon config valid");
    let token =
        macula_gitops::server::auth::read_token(&state_dir).expect("daemon wrote its token");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        daemon
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("daemon runs cleanly");
    });
    // The listener is up once /healthz answers.
    for _ in 0..200 {
        if http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Running {
        addr,
        token,
        metrics,
        stop: Some(tx),
        handle: Some(handle),
    }
}

/// [`start`], then wait until the daemon has applied `revision`.
pub async fn start_applied(cfg: AgentConfig, rec: BusyboxReconciler, revision: &str) -> Running {
    let d = start(cfg, rec).await;
    wait_status(d.addr, "first apply", |s| {
        s.applied_revision.as_deref() == Some(revision)
    })
    .await;
    d
}

/// Poll /status until `pred` holds (generous upper bound; this is not a timing assertion).
pub async fn wait_status(addr: SocketAddr, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
    let mut last = None;
    for _ in 0..600 {
        if let Ok(s) = client::status(addr).await {
            if pred(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; last status: {last:#?}");
}

/// A post-receive hook in `bare` that posts a GitHub-style push payload signed with the
/// secret in `secret_file` and records the HTTP status in `code_file`.
pub fn install_github_hook(bare: &Path, addr: SocketAddr, secret_file: &Path, code_file: &Path) {
    let hook = bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
body='{{"ref":"refs/heads/main","repository":{{"full_name":"lab/gitops"}}}}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat '{secret}')" -r | cut -d' ' -f1)
curl -s -o /dev/null -w '%{{http_code}}' -X POST \
  -H 'X-GitHub-Event: push' -H "X-Hub-Signature-256: sha256=$sig" \
  -H 'Content-Type: application/json' --data "$body" \
  http://{addr}/hooks/github > '{code}'
"#,
            secret = secret_file.display(),
            code = code_file.display(),
        ),
    )
    .expect("write hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `macula-gitops status --output json` against the daemon listening on `listen` (Null when
/// it does not answer yet).
pub fn status_json(listen: &str) -> serde_json::Value {
    let out = std::process::Command::new(super::bin())
        .args(["status", "--output", "json", "--listen", listen])
        .output()
        .expect("status runs");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
