//! Drift detection: the Docker events stream, filtered to containers this agent owns for the
//! host. A die/destroy/unhealthy event asks for a reconcile at once; the stream is
//! re-opened with backoff when the engine restarts.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::engine::DockerEngine;
use crate::labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEvent {
    pub container: String,
    /// `stack/service` from the container's labels.
    pub service: String,
    pub action: String,
    /// When the engine says it happened (`None` for the agent's own `events-reconnected`).
    pub time: Option<std::time::SystemTime>,
    /// A `die`'s exit code: 137 and 143 are a kill from outside (stop, kill, `rm -f`).
    pub exit_code: Option<i64>,
}

/// Actions that mean a managed container is no longer doing what it should. `kill`, `oom` and
/// `stop` are left out: each comes with a `die` once the process is gone, and a pass started
/// before that would find the container still running and miss the repair.
fn is_drift(action: &str) -> bool {
    matches!(action, "die" | "destroy") || action.starts_with("health_status: unhealthy")
}

/// The engine sends `die` while it still handles the exit: the container list a pass reads
/// says "running" until that is done. Inspecting waits for it (the engine holds the container
/// while it handles the exit), so the pass this event starts sees the container stopped.
async fn settled(engine: &DockerEngine, id: Option<&str>) {
    if let Some(id) = id {
        let inspect = engine.client().inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), inspect).await;
    }
}

/// Watch until `tx` is closed. Reconnects forever; errors are logged, never returned.
pub async fn watch(host: String, tx: mpsc::Sender<DriftEvent>) {
    let mut backoff = Duration::from_millis(200);
    let mut reconnected = false;
    while !tx.is_closed() {
        match DockerEngine::connect().await {
            Ok(engine) => {
                let filters = HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    (
                        "label".to_string(),
                        vec![
                            format!("{}=true", labels::MANAGED),
                            format!("{}={host}", labels::HOST),
                        ],
                    ),
                ]);
                let opts = EventsOptionsBuilder::default().filters(&filters).build();
                let mut events = engine.client().events(Some(opts));
                tracing::debug!(host, "watching Docker events");
                if reconnected {
                    // Containers may have stopped while the stream was down: catch up at once.
                    let ev = DriftEvent {
                        container: String::new(),
                        service: String::new(),
                        action: "events-reconnected".into(),
                        time: None,
                        exit_code: None,
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                reconnected = true;
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(msg) => {
                            backoff = Duration::from_millis(200);
                            let action = msg.action.unwrap_or_default();
                            if !is_drift(&action) {
                                continue;
                            }
                            let received = std::time::Instant::now();
                            if action == "die" {
                                settled(&engine, msg.actor.as_ref().and_then(|a| a.id.as_deref()))
                                    .await;
                            }
                            let time = msg
                                .time_nano
                                .and_then(|n| u64::try_from(n).ok())
                                .map(|n| std::time::UNIX_EPOCH + Duration::from_nanos(n));
                            let attrs = msg.actor.and_then(|a| a.attributes).unwrap_or_default();
                            let ev = DriftEvent {
                                container: attrs.get("name").cloned().unwrap_or_default(),
                                service: format!(
                                    "{}/{}",
                                    attrs.get(labels::STACK).map(String::as_str).unwrap_or("?"),
                                    attrs
                                        .get(labels::SERVICE)
                                        .map(String::as_str)
                                        .unwrap_or("?")
                                ),
                                exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
                                action,
                                time,
                            };
                            let lag_ms = ev
                                .time
                                .and_then(|t| t.elapsed().ok())
                                .map(|d| d.as_millis() as u64);
                            tracing::debug!(container = %ev.container, service = %ev.service, action = %ev.action, lag_ms, settle_ms = received.elapsed().as_millis() as u64, "engine event");
                            if tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Docker events stream failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch Docker events; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn drift_actions() {
        for a in ["die", "destroy", "health_status: unhealthy"] {
            assert!(super::is_drift(a), "{a}");
        }
        for a in [
            "kill",
            "start",
            "create",
            "health_status: healthy",
            "exec_start: sh",
        ] {
            assert!(!super::is_drift(a), "{a}");
        }
    }
}
