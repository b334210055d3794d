//! A local HTTP receiver that records every request (method, path with query, headers, body)
//! and answers with the statuses a test queues (200 once the queue is empty): the stand-in
//! for Slack, ntfy, a forge's status API, … in notification and commit-status tests. And
//! [`Silent`]: a receiver that accepts connections and never answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent (percent-encoding kept).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Shared {
    seen: Vec<Received>,
    answers: VecDeque<u16>,
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    let mut g = s.lock().unwrap();
                    g.seen.push(Received {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default(),
                        headers,
                        body: body.to_vec(),
                    });
                    let code = g.answers.pop_front().unwrap_or(200);
                    StatusCode::from_u16(code).unwrap()
                }
            },
        );
        let (url, tx) = super::cluster::serve_local(app).await;
        Self {
            url,
            shared,
            _shutdown: tx,
        }
    }

    /// Answer the next requests with these statuses, in order.
    pub fn answer(&self, codes: &[u16]) {
        self.shared.lock().unwrap().answers.extend(codes);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// Wait (at most `limit`, a bound not a timing assertion) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let start = std::time::Instant::now();
        loop {
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {n} requests; got {}: {seen:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Accepts connections and never answers (a hung receiver): every call to it runs into a
/// deadline. Listens until dropped.
pub struct Silent {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        Self { url, task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}
