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
    /// Crash-looping services whose drift repair waits, and until when (`daemon/pacing.rs`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub paced: std::collections::BTreeMap<String, DateTime<Utc>>,
}

/// One container of a service: a scaled service has one entry per replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// `stack/service`.
    pub name: String,
    /// The container's engine state (`running`, `exited`, ...).
    pub state: String,
    /// Compose's `container-number`: 1 for an unscaled service.
    #[serde(default = "one")]
    pub replica: u32,
    /// Replicas the applied revision wants for the service; `None` when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<u32>,
    /// The commit the container was created from (its `labels::REVISION`): after a rollback,
    /// the pinned services show the last good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for ServiceState {
    fn default() -> Self {
        Self {
            name: String::new(),
            state: String::new(),
            replica: 1,
            wanted: None,
            revision: None,
        }
    }
}

/// A service with one container wanted and one running: `name state`. Otherwise the count
/// running of those wanted, then each replica's state.
fn services_lines(services: &[ServiceState]) -> String {
    let mut o = String::new();
    let mut rest = services;
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|s| s.name == first.name).count();
        let (group, next) = rest.split_at(n);
        rest = next;
        let wanted = first.wanted.unwrap_or(n as u32);
        if n == 1 && wanted == 1 {
            let _ = writeln!(o, "  {:<30} {}", first.name, state(first));
            continue;
        }
        let running = group.iter().filter(|s| s.state == "running").count();
        let _ = writeln!(o, "  {:<30} {running}/{wanted} running", first.name);
        for s in group {
            let _ = writeln!(o, "    #{:<28} {}", s.replica, state(s));
        }
    }
    o
}

/// `running`, or `running    1a2b3c4d5e6f` with the commit the container runs.
fn state(s: &ServiceState) -> String {
    match &s.revision {
        Some(_) => format!("{:<10} {}", s.state, short(&s.revision)),
        None => s.state.clone(),
    }
}

fn short(rev: &Option<String>) -> String {
    rev.as_deref()
        .map(|r| crate::source::short_revision(r, 12))
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
        for (svc, until) in &self.paced {
            let _ = writeln!(
                o,
                "paced:     {svc} (crash loop; next restart {})",
                when(&Some(*until))
            );
        }
        // The items of the last pass one a line, as `apply` prints them, rather than joined.
        let items = self
            .outcome
            .as_ref()
            .filter(|out| !out.errors.is_empty() && out.error_summary() == self.last_error);
        match (items, &self.last_error) {
            (Some(out), _) => {
                let _ = writeln!(o, "failed:    {} items", out.errors.len());
                for e in &out.errors {
                    let _ = writeln!(o, "  {e}");
                }
            }
            (None, Some(e)) => {
                let _ = writeln!(o, "error:     {e}");
            }
            (None, None) => {}
        }
        for d in &self.diagnostics {
            let _ = writeln!(o, "  {d}");
        }
        if !self.services.is_empty() {
            let _ = writeln!(o, "services:");
            o.push_str(&services_lines(&self.services));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, replica: u32, state: &str, wanted: Option<u32>) -> ServiceState {
        ServiceState {
            name: name.into(),
            state: state.into(),
            replica,
            wanted,
            revision: None,
        }
    }

    #[test]
    fn a_scaled_service_shows_running_of_wanted_and_each_replica() {
        let services = [
            container("apps/api", 1, "running", Some(3)),
            container("apps/api", 2, "exited", Some(3)),
            container("apps/web", 1, "running", Some(1)),
            container("apps/worker", 1, "running", None),
        ];
        assert_eq!(
            services_lines(&services),
            format!(
                "  {:<30} 1/3 running\n    #{:<28} running\n    #{:<28} exited\n  {:<30} running\n  {:<30} running\n",
                "apps/api", 1, 2, "apps/web", "apps/worker"
            )
        );
    }

    #[test]
    fn status_json_of_an_older_agent_reads_as_replica_one() {
        let s: ServiceState =
            serde_json::from_str(r#"{"name": "apps/web", "state": "running"}"#).expect("json");
        assert_eq!(s, container("apps/web", 1, "running", None));
    }

    #[test]
    fn the_failed_items_of_a_local_directory_pass_are_one_a_line() {
        let mut outcome = Outcome {
            tried: 5,
            revision: Some("dir:0123456789abcdef0123".into()),
            ..Default::default()
        };
        outcome.absorb(
            0,
            2,
            Vec::new(),
            vec![
                crate::outcome::ItemError::new(None, "pulling image a:1 failed: offline"),
                crate::outcome::ItemError::new(
                    None,
                    "s/a: not started, image a:1 is not available",
                ),
            ],
        );
        let outcome = outcome.settle();
        let status = Status {
            source_kind: "dir".into(),
            applied_revision: outcome.revision.clone(),
            last_error: outcome.error_summary(),
            outcome: Some(outcome),
            ..Default::default()
        };
        let text = status.render();
        assert!(text.contains("applied:   dir:0123456789ab ("), "{text}");
        assert!(
            text.contains("failed:    2 items\n  pulling image a:1 failed: offline\n  s/a: not started, image a:1 is not available\n"),
            "{text}"
        );
        assert!(!text.contains("error:"), "{text}");
        // An error of a later pass that is not the outcome's (a fetch) is shown as it is.
        let later = Status {
            last_error: Some("fetching x: timed out".into()),
            ..status
        };
        assert!(later
            .render()
            .contains("error:     fetching x: timed out\n"));
    }

    #[test]
    fn each_container_shows_the_commit_it_runs() {
        let mut app = container("s/app", 1, "running", Some(1));
        app.revision = Some("1a2b3c4d5e6f708192a3".into());
        let mut api = container("s/api", 2, "exited", Some(2));
        api.revision = Some("abcdef0123456789".into());
        assert_eq!(
            services_lines(&[app, api]),
            format!(
                "  {:<30} running    1a2b3c4d5e6f\n  {:<30} 0/2 running\n    #{:<28} exited     abcdef012345\n",
                "s/app", "s/api", 2
            )
        );
    }
}
