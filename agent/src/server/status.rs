//! The daemon's status as served by `GET /status` and printed by `macula-gitops status`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::outcome::DiagnosticView;
use crate::outcome::Outcome;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub host: String,
    pub source_url: String,
    /// `git` (a repository, fetched) or `dir` (a local directory, used in place).
    #[serde(default)]
    pub source_kind: String,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub path: String,
    /// Newest commit fetched (whether or not it could be applied).
    pub fetched_revision: Option<String>,
    pub fetched_summary: Option<String>,
    pub fetched_at: Option<DateTime<Utc>>,
    /// Commit whose desired state is running.
    pub applied_revision: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    /// success | invalid | refused | error | fetch-error | held
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// Problems of the last refused/invalid revision, each with file, path and line.
    pub diagnostics: Vec<DiagnosticView>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_trigger: Option<String>,
    pub suspended: bool,
    /// The fetched revision differs from the applied one (suspended, outside the apply
    /// window, or refused).
    pub pending: bool,
    pub pending_reason: Option<String>,
    pub apply_window: Option<String>,
    pub next_window: Option<DateTime<Utc>>,
    /// Per-service state as reported by the last reconcile.
    pub services: Vec<ServiceState>,
    /// The outcome of the last pass that applied (changes, errors, clusters, data dirs).
    pub outcome: Option<Outcome>,
    /// Live forwarders: listen, target, state, connections active/total, bytes each way.
    #[serde(default)]
    pub forwards: Vec<serde_json::Value>,
    /// Notification and commit-status targets: last delivery, counts (`crate::notify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::TargetStatus>,
    /// The latest rollout (`crate::rollout`): revision, healthy | failed | rolled-back, what
    /// failed and why, and the services pinned to the last good revision.
    #[serde(default)]
    pub rollout: Option<crate::rollout::Rollout>,
    /// The revision a rollback returns to.
    #[serde(default)]
    pub last_good_revision: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    pub name: String,
    pub state: String,
}

fn short(rev: &Option<String>) -> String {
    rev.as_deref()
        .map(|r| r.chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

impl Status {
    /// Human-readable form for `macula-gitops status`.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let when = |t: &Option<DateTime<Utc>>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "never".into())
        };
        let _ = writeln!(o, "host:      {}", self.host);
        if self.source_kind == "dir" {
            let _ = writeln!(o, "source:    {} (local directory)", self.source_url);
        } else {
            let _ = writeln!(
                o,
                "source:    {} (ref {}, path {})",
                self.source_url,
                self.reference.as_deref().unwrap_or("HEAD"),
                if self.path.is_empty() {
                    "."
                } else {
                    &self.path
                }
            );
        }
        let _ = writeln!(
            o,
            "fetched:   {} {} ({})",
            short(&self.fetched_revision),
            self.fetched_summary.as_deref().unwrap_or(""),
            when(&self.fetched_at)
        );
        let _ = writeln!(
            o,
            "applied:   {} ({})",
            short(&self.applied_revision),
            when(&self.applied_at)
        );
        let _ = writeln!(
            o,
            "result:    {}{}",
            self.last_result.as_deref().unwrap_or("-"),
            self.last_trigger
                .as_deref()
                .map(|t| format!(" (trigger: {t}, {})", when(&self.last_run_at)))
                .unwrap_or_default()
        );
        if self.suspended {
            let _ = writeln!(o, "suspended: yes (fetching continues, nothing is applied)");
        }
        if self.pending {
            let _ = writeln!(
                o,
                "pending:   {}",
                self.pending_reason.as_deref().unwrap_or("yes")
            );
        }
        if let Some(w) = &self.apply_window {
            let _ = writeln!(
                o,
                "window:    {w} (next opening: {})",
                when(&self.next_window)
            );
        }
        if let Some(r) = &self.rollout {
            let _ = writeln!(
                o,
                "rollout:   {} {} (last good: {})",
                short(&Some(r.revision.clone())),
                r.phase.as_str(),
                short(&self.last_good_revision)
            );
            for (svc, why) in &r.failed {
                let _ = writeln!(o, "  {svc}: {why}");
            }
            if !r.pinned.is_empty() {
                let _ = writeln!(
                    o,
                    "  pinned to {}: {}",
                    short(&r.pinned_to),
                    r.pinned.join(", ")
                );
            }
        }
        if let Some(e) = &self.last_error {
            let _ = writeln!(o, "error:     {e}");
        }
        for d in &self.diagnostics {
            let _ = writeln!(o, "  {d}");
        }
        if !self.services.is_empty() {
            let _ = writeln!(o, "services:");
            for s in &self.services {
                let _ = writeln!(o, "  {:<30} {}", s.name, s.state);
            }
        }
        if let Some(outcome) = &self.outcome {
            o.push_str(&outcome.status_lines());
        }
        let field = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .map(|x| x.to_string().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        if !self.forwards.is_empty() {
            let _ = writeln!(o, "forwards:");
            for f in &self.forwards {
                let _ = writeln!(
                    o,
                    "  {:<24} {} -> {} {} (active {}, total {}, bytes {}/{})",
                    field(f, "name"),
                    field(f, "listen"),
                    field(f, "target"),
                    field(f, "state"),
                    field(f, "connections_active"),
                    field(f, "connections_total"),
                    field(f, "bytes_to_target"),
                    field(f, "bytes_from_target")
                );
            }
        }
        if !self.notifications.is_empty() {
            let _ = writeln!(o, "notifications:");
            for t in &self.notifications {
                let _ = writeln!(o, "  {}", t.line());
            }
        }
        o
    }
}
