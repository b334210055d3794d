//! Watching the services a revision changed until each is healthy, failed, or out of time.
//!
//! Event-driven: the engine's events for those containers (die, start, health_status, …) wake
//! the watch, which re-reads each undecided container and judges it (`judge`, pure); a timer
//! wakes it at the next deadline or stability point, so nothing waits past its deadline and
//! nothing polls in between.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// One container to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `stack/service`.
    pub service: String,
    pub container: String,
    /// How long it may take to become healthy (or, without a healthcheck, stay running).
    #[serde(rename = "timeout_secs", with = "secs")]
    pub timeout: Duration,
    /// Why the pass could not start it (its error, e.g. the image is not available): with no
    /// container there is nothing to wait for, so it fails at once instead of at its deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_started: Option<String>,
}

/// Whole seconds in status and the persisted rollout state (`timeout_secs`).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// What the engine says about a watched container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// `running`, `restarting`, `exited`, `dead`, `created`, … ; empty when it is gone.
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    /// The container's restart policy (`no`, `always`, `on-failure`, `unless-stopped`).
    pub restart_policy: String,
    /// Time since the container last started, when the engine says; a container drift repair
    /// started again must itself stay up `stable`.
    pub running_for: Option<Duration>,
}

/// Why a service failed its rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Failure {
    Exited {
        code: i64,
    },
    RestartLoop {
        restarts: i64,
    },
    Unhealthy,
    /// Still not healthy (or not running) when its deadline passed.
    Timeout {
        secs: u64,
        state: String,
    },
    /// The pass failed to start it and it has no container.
    NotStarted {
        error: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited { code } => write!(f, "exited with code {code}"),
            Failure::RestartLoop { restarts } => {
                write!(f, "restart loop ({restarts} restarts)")
            }
            Failure::Unhealthy => f.write_str("healthcheck reports unhealthy"),
            Failure::Timeout { secs, state } => {
                write!(f, "not healthy within {secs}s (still {state})")
            }
            Failure::NotStarted { error } => f.write_str(error),
        }
    }
}

/// The verdict on one container at one moment; `None` from `judge` = not decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Failed(Failure),
}

/// Judge `seen` after `elapsed` of watching. A container with a healthcheck must report
/// `healthy`; one without must stay running for `stable` (a crash loop shows within it); a
/// one-shot job that exits 0 and is not restarted has done its work. A container that is gone
/// (removed by hand: drift repair creates it again) is not a verdict until its deadline.
pub fn judge(
    seen: &Seen,
    elapsed: Duration,
    stable: Duration,
    timeout: Duration,
) -> Option<Verdict> {
    let fail = |f| Some(Verdict::Failed(f));
    let checked = matches!(
        seen.health.as_deref(),
        Some("starting" | "healthy" | "unhealthy")
    );
    let restarts_itself = matches!(seen.restart_policy.as_str(), "always" | "unless-stopped");
    match seen.state.as_str() {
        "restarting" => {
            return fail(Failure::RestartLoop {
                restarts: seen.restart_count.max(1),
            })
        }
        _ if seen.restart_count > 0 => {
            return fail(Failure::RestartLoop {
                restarts: seen.restart_count,
            })
        }
        "exited" | "dead" => {
            let code = seen.exit_code.unwrap_or(-1);
            return if code == 0 && !checked && !restarts_itself {
                Some(Verdict::Healthy)
            } else {
                fail(Failure::Exited { code })
            };
        }
        _ => {}
    }
    match seen.health.as_deref() {
        Some("unhealthy") => return fail(Failure::Unhealthy),
        Some("healthy") if seen.state == "running" => return Some(Verdict::Healthy),
        _ if !checked && seen.state == "running" && up(seen, elapsed) >= stable => {
            return Some(Verdict::Healthy)
        }
        _ => {}
    }
    if elapsed >= timeout {
        let state = match seen.health.as_deref() {
            Some(h) if checked => format!("{} ({h})", seen.state),
            _ if seen.state.is_empty() => "gone".into(),
            _ => seen.state.clone(),
        };
        return fail(Failure::Timeout {
            secs: timeout.as_secs(),
            state,
        });
    }
    None
}

/// How long `seen` has been up: since its start when known, else since the watch began.
fn up(seen: &Seen, elapsed: Duration) -> Duration {
    seen.running_for.unwrap_or(elapsed)
}

/// The engine side of a watch: a stream of "something happened to one of these containers"
/// and a read of one container. Narrow so the watch loop is the same for every engine.
pub trait HealthWatch: Send {
    /// Wait for the next event about one of `containers` (by name); `None` when the stream
    /// ended (the watch then falls back to its timers).
    fn next_event(&mut self) -> impl Future<Output = Option<String>> + Send;
    fn inspect(&mut self, container: &str) -> impl Future<Output = Seen> + Send;
}

/// A safety net, not the mechanism: the events stream is opened lazily (at its first poll),
/// so a change between the first read and that moment is caught by this re-read at the latest.
const RECHECK: Duration = Duration::from_secs(5);

/// Watch `targets` until each has a verdict. Every deadline is a bound: the result comes at
/// the latest when the longest timeout has passed.
pub async fn watch<W: HealthWatch>(
    w: &mut W,
    targets: &[Target],
    stable: Duration,
) -> BTreeMap<String, Verdict> {
    let start = Instant::now();
    let mut out = BTreeMap::new();
    let mut events_open = true;
    loop {
        let elapsed = start.elapsed();
        let mut next_wake: Option<Duration> = None;
        let pending: Vec<&Target> = targets
            .iter()
            .filter(|t| !out.contains_key(&t.service))
            .collect();
        for t in pending {
            let seen = w.inspect(&t.container).await;
            let verdict = match &t.not_started {
                Some(error) if seen.state.is_empty() => {
                    Some(Verdict::Failed(Failure::NotStarted {
                        error: error.clone(),
                    }))
                }
                _ => judge(&seen, elapsed, stable, t.timeout),
            };
            match verdict {
                Some(v) => {
                    tracing::info!(service = %t.service, verdict = ?v, "rollout watch");
                    out.insert(t.service.clone(), v);
                }
                None => {
                    // Wake at its deadline, or when it will have been stable long enough.
                    let mut at = t.timeout.min(elapsed + RECHECK);
                    let up = up(&seen, elapsed);
                    if seen.health.is_none() && stable > up {
                        at = at.min(elapsed + (stable - up));
                    }
                    next_wake = Some(next_wake.map_or(at, |n: Duration| n.min(at)));
                }
            }
        }
        let Some(wake) = next_wake else {
            return out;
        };
        let sleep = tokio::time::sleep(wake.saturating_sub(start.elapsed()));
        if events_open {
            tokio::select! {
                ev = w.next_event() => events_open = ev.is_some(),
                _ = sleep => {}
            }
        } else {
            sleep.await;
        }
    }
}

/// The real engine: Docker's events for the watched containers, and inspect.
pub struct DockerHealth {
    docker: Docker,
    events: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<bollard::models::EventMessage, bollard::errors::Error>,
                > + Send,
        >,
    >,
}

impl DockerHealth {
    /// Subscribe before the first inspect, so nothing that happens in between is missed.
    pub fn new(docker: &Docker, containers: &[String]) -> Self {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), containers.to_vec()),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        Self {
            docker: docker.clone(),
            events: Box::pin(docker.events(Some(opts))),
        }
    }
}

impl HealthWatch for DockerHealth {
    async fn next_event(&mut self) -> Option<String> {
        match self.events.next().await {
            Some(Ok(msg)) => Some(
                msg.actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default(),
            ),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Docker events stream failed; rollout watch continues on its timers");
                None
            }
            None => None,
        }
    }

    async fn inspect(&mut self, container: &str) -> Seen {
        let Ok(c) = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        else {
            return Seen::default();
        };
        let state = c.state.unwrap_or_default();
        let running_for = state
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            });
        Seen {
            running_for,
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            exit_code: state.exit_code,
            restart_count: c.restart_count.unwrap_or(0),
            restart_policy: c
                .host_config
                .and_then(|h| h.restart_policy)
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: &str, health: Option<&str>, restarts: i64, policy: &str) -> Seen {
        Seen {
            state: state.into(),
            health: health.map(Into::into),
            exit_code: Some(if state == "exited" { 1 } else { 0 }),
            restart_count: restarts,
            restart_policy: policy.into(),
            running_for: None,
        }
    }

    #[test]
    fn judge_table() {
        let s = Duration::from_secs;
        let (stable, timeout) = (s(10), s(120));
        let healthy = Some(Verdict::Healthy);
        let failed = |f| Some(Verdict::Failed(f));
        let mut ok_job = seen("exited", None, 0, "no");
        ok_job.exit_code = Some(0);
        let cases: Vec<(Seen, Duration, Option<Verdict>)> = vec![
            (
                seen("running", Some("healthy"), 0, "always"),
                s(1),
                healthy.clone(),
            ),
            (seen("running", Some("starting"), 0, "always"), s(1), None),
            (
                seen("running", Some("starting"), 0, "always"),
                s(120),
                failed(Failure::Timeout {
                    secs: 120,
                    state: "running (starting)".into(),
                }),
            ),
            (
                seen("running", Some("unhealthy"), 0, "always"),
                s(1),
                failed(Failure::Unhealthy),
            ),
            (seen("running", None, 0, "no"), s(1), None),
            (seen("running", None, 0, "no"), s(10), healthy.clone()),
            (
                seen("running", None, 2, "always"),
                s(1),
                failed(Failure::RestartLoop { restarts: 2 }),
            ),
            (
                seen("restarting", None, 0, "always"),
                s(1),
                failed(Failure::RestartLoop { restarts: 1 }),
            ),
            (
                seen("exited", None, 0, "no"),
                s(1),
                failed(Failure::Exited { code: 1 }),
            ),
            (ok_job.clone(), s(1), healthy.clone()),
            (
                Seen {
                    restart_policy: "always".into(),
                    ..ok_job
                },
                s(1),
                failed(Failure::Exited { code: 0 }),
            ),
            // Removed by hand: drift repair brings it back; only the deadline decides.
            (Seen::default(), s(1), None),
            (
                Seen::default(),
                s(120),
                failed(Failure::Timeout {
                    secs: 120,
                    state: "gone".into(),
                }),
            ),
            // Started again 2 s ago (drift repair): it must itself stay up `stable`.
            (
                Seen {
                    running_for: Some(s(2)),
                    ..seen("running", None, 0, "no")
                },
                s(30),
                None,
            ),
            (
                seen("created", None, 0, "no"),
                s(120),
                failed(Failure::Timeout {
                    secs: 120,
                    state: "created".into(),
                }),
            ),
        ];
        for (i, (seen, elapsed, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                judge(&seen, elapsed, stable, timeout),
                want,
                "case {i}: {seen:?}"
            );
        }
    }
}
