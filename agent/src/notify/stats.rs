//! What the notifier reports about itself: per target the last delivery (for `/status`) and
//! counters by result (for `/metrics`). Never a URL, token or response header.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The receiver answered 2xx.
    Sent,
    /// Every attempt failed, or the receiver refused it (4xx other than 429).
    Failed,
    /// The target's queue was full (the receiver has been down for a while), or the agent
    /// stopped before it was delivered (`Notifier::flush`).
    Dropped,
    /// The same event was sent before and the reminder interval has not passed.
    Suppressed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
            Self::Suppressed => "suppressed",
        }
    }
}

/// One target (a sink or the commit-status provider) in `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    /// json | ntfy | slack | discord | mattermost | matrix | github | gitea | gitlab
    pub kind: String,
    /// The last delivery that ended (sent, failed or dropped; suppressions are only counted).
    pub last_result: Option<Outcome>,
    pub last_event: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
    /// Why the last failed delivery failed (HTTP status or transport error, never the URL).
    pub last_error: Option<String>,
    pub sent: u64,
    pub failed: u64,
}

impl TargetStatus {
    /// `slack (slack): sent failed 2026-11-30 19:00:00 UTC — HTTP 404; 3 sent, 1 failed`.
    pub fn line(&self) -> String {
        let last = match (self.last_result, &self.last_event, self.last_at) {
            (Some(r), Some(e), Some(at)) => {
                format!("{} {e} {}", r.as_str(), at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            _ => "nothing sent yet".into(),
        };
        let error = match (&self.last_error, self.last_result) {
            (Some(e), Some(r)) if r != Outcome::Sent => format!(" — {e}"),
            _ => String::new(),
        };
        format!(
            "{} ({}): {last}{error}; {} sent, {} failed",
            self.name, self.kind, self.sent, self.failed
        )
    }
}

type Labels = Vec<(String, String)>;

/// `macula_gitops_notifications_total{target, result}`.
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    pub deliveries: Family<Labels, Counter>,
}

impl NotifyMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "notifications",
            "Notifications and commit statuses by target and result (sent, failed, dropped, suppressed)",
            self.deliveries.clone(),
        );
    }
}

/// Shared between the publisher, the delivery tasks and the status endpoint.
#[derive(Clone, Default)]
pub struct Stats {
    targets: Arc<Mutex<BTreeMap<String, TargetStatus>>>,
    metrics: NotifyMetrics,
}

impl Stats {
    pub fn new(metrics: NotifyMetrics) -> Self {
        Self {
            targets: Default::default(),
            metrics,
        }
    }

    pub fn add_target(&self, name: &str, kind: &str) {
        self.lock().insert(
            name.into(),
            TargetStatus {
                name: name.into(),
                kind: kind.into(),
                ..Default::default()
            },
        );
    }

    pub fn record(&self, target: &str, event: &str, outcome: Outcome, error: Option<String>) {
        self.metrics
            .deliveries
            .get_or_create(&vec![
                ("target".into(), target.into()),
                ("result".into(), outcome.as_str().into()),
            ])
            .inc();
        if outcome == Outcome::Suppressed {
            return;
        }
        let mut all = self.lock();
        let Some(t) = all.get_mut(target) else {
            return;
        };
        t.last_result = Some(outcome);
        t.last_event = Some(event.into());
        t.last_at = Some(Utc::now());
        match outcome {
            Outcome::Sent => t.sent += 1,
            _ => t.failed += 1,
        }
        if error.is_some() {
            t.last_error = error;
        }
    }

    pub fn snapshot(&self) -> Vec<TargetStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TargetStatus>> {
        // A panic while holding this lock leaves plain counters; they are still good to show.
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_says_what_happened_last_and_why_it_failed() {
        let s = Stats::new(NotifyMetrics::default());
        s.add_target("chat", "slack");
        assert_eq!(
            s.snapshot()[0].line(),
            "chat (slack): nothing sent yet; 0 sent, 0 failed"
        );
        s.record("chat", "failed", Outcome::Sent, None);
        s.record("chat", "applied", Outcome::Failed, Some("HTTP 404".into()));
        s.record("chat", "applied", Outcome::Suppressed, None);
        let line = s.snapshot()[0].line();
        assert!(
            line.starts_with("chat (slack): failed applied 20"),
            "{line}"
        );
        assert!(
            line.ends_with(" UTC — HTTP 404; 1 sent, 1 failed"),
            "{line}"
        );
    }
}
