//! Delivery off the reconcile path: each target has a bounded queue and one task that sends
//! its requests in order, retrying with backoff. Publishing never waits (a full queue drops the
//! event and counts it); every call has a deadline; the retry policy lives only here.
//!
//! When the agent stops, a [`Flush`] gives the tasks a deadline: each sends what is queued (a
//! pause between retries is cut short: one more try at once), then ends; what is still unsent
//! at the deadline — the call in flight included — is counted as dropped, and the task ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::request::{HttpRequest, Method};
use super::stats::{Outcome, Stats};

/// The one side effect of this module: make an HTTP call, answer its status code. An `Err` is
/// a transport failure, worded without the URL.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, req: &HttpRequest) -> impl Future<Output = Result<Answer, String>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The start of the body, for the error when the receiver refuses (Slack says why).
    pub body: String,
}

/// reqwest with a deadline per call and no redirects: a redirect would carry the token's
/// headers to a host nobody configured.
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub fn new(timeout: Duration) -> Self {
        // reqwest is built without a default TLS provider; an Err means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { client }
    }
}

impl Transport for HttpTransport {
    async fn send(&self, req: &HttpRequest) -> Result<Answer, String> {
        let mut b = match req.method {
            Method::Post => self.client.post(&req.url),
            Method::Put => self.client.put(&req.url),
        };
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        // reqwest's errors quote the URL, which can be the secret itself.
        let resp = b
            .body(req.body.clone())
            .send()
            .await
            .map_err(|e| chain(&e.without_url()))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: super::event::clip(body.trim(), 200),
        })
    }
}

/// `e` and its causes ("error sending request: client error (Connect): tcp connect error:
/// Connection refused"); reqwest's top line alone does not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    crate::redact::redact(&out).into_owned()
}

/// How often and how patiently a delivery is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl Retry {
    /// The pause after failed attempt `n` (1-based): doubling from `first_delay`, capped.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

pub struct Job {
    pub event: &'static str,
    pub request: HttpRequest,
    /// Its de-duplication slot and fingerprint (`dedup.rs`), forgotten if it is never sent.
    pub topic: &'static str,
    pub fingerprint: String,
}

/// Why a job left in a queue at the flush deadline was not sent.
pub const UNSENT: &str = "not delivered before the agent stopped";

/// The flush deadline, as the delivery tasks see it: none until the agent stops.
#[derive(Clone)]
pub struct Flush(watch::Receiver<Option<Instant>>);

impl Flush {
    /// The notifier keeps the sender: `send_replace(Some(deadline))` starts the flush.
    pub fn channel() -> (watch::Sender<Option<Instant>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self(rx))
    }

    fn deadline(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Resolves when the flush begins (never, if the notifier is gone without one).
    async fn begun(&mut self) {
        if self.0.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves at the flush deadline.
    async fn expired(&mut self) {
        self.begun().await;
        if let Some(d) = self.deadline() {
            tokio::time::sleep_until(d).await;
        }
    }
}

/// Start `target`'s delivery task; the sender is its queue. The task ends once a flush has
/// emptied the queue or reached its deadline, answering the jobs it left unsent.
pub fn spawn<T: Transport>(
    target: String,
    capacity: usize,
    retry: Retry,
    transport: Arc<T>,
    stats: Stats,
    mut flush: Flush,
) -> (mpsc::Sender<Job>, JoinHandle<Vec<Job>>) {
    let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
    let task = tokio::spawn(async move {
        loop {
            let job = match flush.deadline() {
                Some(_) => rx.try_recv().ok(),
                None => tokio::select! {
                    j = rx.recv() => j,
                    () = flush.begun() => continue,
                },
            };
            let Some(job) = job else {
                return Vec::new();
            };
            let (outcome, error) = deliver(&*transport, &job.request, retry, &mut flush).await;
            match &error {
                None => {
                    tracing::debug!(target = %target, event = job.event, to = %job.request.shown(), "notification sent")
                }
                Some(e) => {
                    tracing::warn!(target = %target, event = job.event, to = %job.request.shown(), error = %e, "notification not delivered")
                }
            }
            stats.record(&target, job.event, outcome, error);
            if outcome == Outcome::Dropped {
                let mut unsent = vec![job];
                while let Ok(job) = rx.try_recv() {
                    stats.record(&target, job.event, Outcome::Dropped, Some(UNSENT.into()));
                    unsent.push(job);
                }
                return unsent;
            }
        }
    });
    (tx, task)
}

/// Try until a 2xx, a refusal that retrying cannot change (4xx but 408/429), the last attempt,
/// or the flush deadline (`Dropped`).
async fn deliver<T: Transport>(
    transport: &T,
    req: &HttpRequest,
    retry: Retry,
    flush: &mut Flush,
) -> (Outcome, Option<String>) {
    let unsent = || (Outcome::Dropped, Some(UNSENT.to_string()));
    let mut last = String::new();
    for n in 1..=retry.attempts.max(1) {
        let answer = tokio::select! {
            a = transport.send(req) => a,
            () = flush.expired() => return unsent(),
        };
        match answer {
            Ok(a) if (200..300).contains(&a.status) => return (Outcome::Sent, None),
            Ok(a) => {
                last = match a.body.is_empty() {
                    true => format!("HTTP {}", a.status),
                    false => format!("HTTP {}: {}", a.status, crate::redact::redact(&a.body)),
                };
                if (400..500).contains(&a.status) && a.status != 408 && a.status != 429 {
                    return (Outcome::Failed, Some(last));
                }
            }
            Err(e) => last = e,
        }
        if n < retry.attempts {
            let pause = tokio::time::sleep(retry.delay(n));
            match flush.deadline() {
                // A flush beginning cuts the pause short: the next try is now.
                None => tokio::select! {
                    () = pause => {}
                    () = flush.begun() => {}
                },
                Some(_) => tokio::select! {
                    () = pause => {}
                    () = flush.expired() => return unsent(),
                },
            }
        }
    }
    (
        Outcome::Failed,
        Some(format!("{last} (after {} attempts)", retry.attempts.max(1))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = Retry {
            attempts: 9,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        };
        let d: Vec<u64> = (1..=7).map(|n| r.delay(n).as_secs()).collect();
        assert_eq!(d, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(r.delay(200), Duration::from_secs(60));
    }
}
