//! Client side of the local API, for `macula-gitops reconcile|suspend|resume|status`.
//! Control calls take the token the daemon wrote to its state dir (`super::auth::read_token`).

use std::net::SocketAddr;

use super::status::Status;
use super::ServerError;

fn client_err(addr: SocketAddr, e: impl std::fmt::Display) -> ServerError {
    ServerError::Client {
        addr: addr.to_string(),
        message: e.to_string(),
    }
}

/// reqwest is built without a default TLS crypto provider; install ours before any client.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(addr: SocketAddr, token: &str, path: &str) -> Result<String, ServerError> {
    let url = format!("http://{addr}{path}");
    let resp = http_client()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| client_err(addr, format!("{e} (is `macula-gitops run` running?)")))?;
    let code = resp.status();
    let text = resp.text().await.map_err(|e| client_err(addr, e))?;
    if !code.is_success() {
        return Err(client_err(addr, format!("{code}: {}", text.trim())));
    }
    Ok(text.trim().to_string())
}

/// Ask the running daemon to fetch and reconcile now; `force`: roll the revision out again
/// even if it was rolled back.
pub async fn reconcile(addr: SocketAddr, token: &str, force: bool) -> Result<String, ServerError> {
    let path = if force {
        "/reconcile?force=true"
    } else {
        "/reconcile"
    };
    post(addr, token, path).await
}

/// Stop applying (fetching continues); persists across daemon restarts.
pub async fn suspend(addr: SocketAddr, token: &str) -> Result<String, ServerError> {
    post(addr, token, "/suspend").await
}

pub async fn resume(addr: SocketAddr, token: &str) -> Result<String, ServerError> {
    post(addr, token, "/resume").await
}

pub async fn status(addr: SocketAddr) -> Result<Status, ServerError> {
    let url = format!("http://{addr}/status");
    http_client()
        .get(&url)
        .send()
        .await
        .map_err(|e| client_err(addr, format!("{e} (is `macula-gitops run` running?)")))?
        .error_for_status()
        .map_err(|e| client_err(addr, e))?
        .json::<Status>()
        .await
        .map_err(|e| client_err(addr, e))
}

/// `status` for the CLI: human text, or pretty JSON with `json = true`.
pub async fn status_text(addr: SocketAddr, json: bool) -> Result<String, ServerError> {
    let st = status(addr).await?;
    if json {
        Ok(serde_json::to_string_pretty(&st).expect("status serialises"))
    } else {
        Ok(st.render())
    }
}
