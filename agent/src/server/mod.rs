//! The daemon's HTTP listener: push webhooks, the local API (`/status`, `/healthz`,
//! `/metrics`) and control endpoints (`/reconcile`, `/suspend`, `/resume`).
//!
//! Control endpoints answer only to loopback peers that present the token from the state dir,
//! so binding the listener to a public address for webhooks does not hand out control of the
//! host; see `auth` for the token and the Host/Origin checks.

pub mod auth;
pub mod client;
pub mod metrics;
pub mod status;
pub mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::trigger::{Cause, Trigger};
use metrics::Metrics;
use status::Status;
use webhook::Provider;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("daemon at {addr}: {message}")]
    Client { addr: String, message: String },
}

/// Suspend flag, persisted as `<state_dir>/suspended` so it survives restarts.
pub struct Control {
    suspended: AtomicBool,
    marker: PathBuf,
}

impl Control {
    pub fn load(state_dir: &Path) -> Self {
        let marker = state_dir.join("suspended");
        Self {
            suspended: AtomicBool::new(marker.exists()),
            marker,
        }
    }

    pub fn suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    pub fn set_suspended(&self, on: bool) -> Result<(), ServerError> {
        let io = |source| ServerError::Io {
            path: self.marker.clone(),
            source,
        };
        if on {
            if let Some(dir) = self.marker.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            std::fs::write(&self.marker, b"suspended via API\n").map_err(io)?;
        } else {
            match std::fs::remove_file(&self.marker) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        self.suspended.store(on, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::push_concerns;

    #[test]
    fn which_pushes_matter() {
        assert!(push_concerns(Some("main"), Some("refs/heads/main")));
        assert!(push_concerns(
            Some("refs/heads/main"),
            Some("refs/heads/main")
        ));
        assert!(!push_concerns(Some("main"), Some("refs/heads/feature")));
        assert!(push_concerns(Some("v1.0"), Some("refs/tags/v1.0")));
        assert!(push_concerns(None, Some("refs/heads/x")));
        assert!(push_concerns(Some("main"), None));
        assert!(push_concerns(Some("HEAD"), Some("refs/heads/x")));
        assert!(push_concerns(Some(&"a".repeat(40)), Some("refs/heads/x")));
    }
}

#[derive(Clone)]
pub struct AppState {
    pub status: Arc<RwLock<Status>>,
    pub trigger: Trigger,
    pub metrics: Arc<Metrics>,
    pub control: Arc<Control>,
    /// Webhook secret; `None` = webhooks disabled.
    pub secret: Option<Arc<Vec<u8>>>,
    /// The configured `source.ref`: pushes to other branches/tags are acknowledged and ignored.
    pub watch_ref: Option<String>,
    /// The running forwarders, for their live counters in `/status`.
    pub forwarder: Option<crate::reconcile::SharedForwarder>,
    pub guard: Arc<auth::ApiGuard>,
    /// Reads the managed services from the engine when `/status` is asked, so the answer is
    /// the engine's state at that moment, not the last pass's.
    pub services: Option<ServicesFn>,
    /// Notification and commit-status targets, for their last delivery in `/status`.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

pub type ServicesFn = Arc<
    dyn Fn()
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<status::ServiceState>> + Send>>
        + Send
        + Sync,
>;

/// How long `/status` waits for the engine before answering with the last pass's view.
const LIVE_SERVICES_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Does a push to `pushed` (`refs/heads/x`, `refs/tags/y`, from the payload) concern `watched`?
/// When in doubt (no ref in the payload, HEAD or a pinned commit configured), it does.
pub fn push_concerns(watched: Option<&str>, pushed: Option<&str>) -> bool {
    let (Some(w), Some(p)) = (watched, pushed) else {
        return true;
    };
    let short = |r: &str| -> String {
        r.strip_prefix("refs/heads/")
            .or_else(|| r.strip_prefix("refs/tags/"))
            .unwrap_or(r)
            .to_string()
    };
    let is_commit = w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit());
    w == "HEAD" || is_commit || short(w) == short(p)
}

pub fn router(state: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/hooks/{provider}", post(hook))
        .layer(DefaultBodyLimit::max(max_body))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/reconcile", control_route(Action::Reconcile))
        .route("/suspend", control_route(Action::Suspend))
        .route("/resume", control_route(Action::Resume))
        .with_state(state)
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServerError::Serve)
}

async fn hook(
    State(s): State<AppState>,
    UrlPath(provider): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(p) = Provider::from_path(&provider) else {
        return (StatusCode::NOT_FOUND, "unknown webhook provider\n").into_response();
    };
    let Some(secret) = &s.secret else {
        s.metrics.count_webhook(p.as_str(), "rejected");
        return (StatusCode::UNAUTHORIZED, "webhooks are not configured\n").into_response();
    };
    if let Err(e) = webhook::verify(p, &headers, &body, secret) {
        s.metrics.count_webhook(p.as_str(), "rejected");
        tracing::warn!(provider = p.as_str(), reason = %e, "webhook rejected");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    s.metrics.count_webhook(p.as_str(), "accepted");
    let event = headers
        .get("x-github-event")
        .or_else(|| headers.get("x-gitea-event"))
        .and_then(|v| v.to_str().ok());
    if event == Some("ping") {
        return (StatusCode::OK, "pong\n").into_response();
    }
    let pushed = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    if !push_concerns(s.watch_ref.as_deref(), pushed.as_deref()) {
        tracing::debug!(provider = p.as_str(), pushed = ?pushed, "push to another ref ignored");
        return (StatusCode::ACCEPTED, "ignored: push to another ref\n").into_response();
    }
    tracing::info!(provider = p.as_str(), pushed = ?pushed, "webhook accepted, fetching");
    s.trigger.fire(Cause::Webhook);
    (StatusCode::ACCEPTED, "queued\n").into_response()
}

async fn status(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.guard.check_read(&peer, &headers) {
        return refused(r);
    }
    let mut st = s.status.read().expect("status lock").clone();
    st.suspended = s.control.suspended();
    if let Some(f) = &s.services {
        match tokio::time::timeout(LIVE_SERVICES_WITHIN, f()).await {
            Ok(live) => st.services = live,
            Err(_) => tracing::warn!("engine slow: /status shows services as of the last pass"),
        }
    }
    if let Some(n) = &s.notifier {
        st.notifications = n.targets();
    }
    if let Some(f) = &s.forwarder {
        st.forwards =
            f.0.stats()
                .await
                .iter()
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect();
    }
    Json(st).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

fn refused(r: auth::Refusal) -> Response {
    match r {
        auth::Refusal::Forbidden(why) => {
            tracing::warn!(reason = %why, "API request refused");
            (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
        }
        auth::Refusal::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            format!(
                "control endpoints need `Authorization: Bearer <token>` (the token is in {} under the state dir)\n",
                auth::TOKEN_FILE
            ),
        )
            .into_response(),
    }
}

#[derive(Clone, Copy)]
enum Action {
    Reconcile,
    Suspend,
    Resume,
}

/// `POST /reconcile?force=true`: roll out the current revision again even if it was rolled
/// back (a plain reconcile keeps a rolled-back revision's pins).
#[derive(Debug, Default, serde::Deserialize)]
struct ControlQuery {
    #[serde(default)]
    force: bool,
}

async fn control(
    s: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    action: Action,
    q: ControlQuery,
) -> Response {
    if let Err(r) = s.guard.check_control(&peer, &headers) {
        return refused(r);
    }
    match action {
        Action::Reconcile if q.force => {
            s.trigger.fire(Cause::Force);
            (StatusCode::ACCEPTED, "forced rollout queued\n").into_response()
        }
        Action::Reconcile => {
            s.trigger.fire(Cause::Manual);
            (StatusCode::ACCEPTED, "reconcile queued\n").into_response()
        }
        Action::Suspend => set_suspended(&s, true),
        Action::Resume => {
            let r = set_suspended(&s, false);
            s.trigger.fire(Cause::Resume);
            r
        }
    }
}

/// The axum handler for one control endpoint.
fn control_route(action: Action) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(s): State<AppState>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              headers: HeaderMap,
              Query(q): Query<ControlQuery>| control(s, peer, headers, action, q),
    )
}

fn set_suspended(s: &AppState, on: bool) -> Response {
    match s.control.set_suspended(on) {
        Ok(()) => {
            tracing::info!(suspended = on, "apply suspension changed");
            let word = if on { "suspended" } else { "resumed" };
            (StatusCode::OK, format!("{word}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
