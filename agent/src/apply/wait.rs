//! Waiting on a container without polling: read its state, then sleep until the engine reports
//! a change (Docker events from just before the read, so none in between is missed) and read it
//! again. A dependent starts the moment its dependency turns healthy, not up to a poll interval
//! later. If the events stream fails, the wait polls instead.

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;

use crate::desired::compose::Condition;
use crate::engine::{ContainerStatus, Engine, EngineError};

/// Read again this often even while events flow: a change no event announced is still seen.
const SAFETY_NET: Duration = Duration::from_secs(2);
/// Without an events stream.
const POLL: Duration = Duration::from_millis(250);

/// A verdict on one reading: `None` while it can still go either way.
type Check = fn(&ContainerStatus) -> Option<Result<(), String>>;

/// Wait until the dependency `id` satisfies `cond`; the error says what it did instead.
pub(super) async fn condition<E: Engine>(
    engine: &E,
    id: &str,
    cond: Condition,
    timeout: Duration,
) -> Result<(), String> {
    let (check, goal): (Check, _) = match cond {
        Condition::ServiceStarted => return Ok(()),
        Condition::ServiceHealthy => (healthy, "healthy"),
        Condition::ServiceCompletedSuccessfully => (completed, "complete"),
    };
    let verdict = until(engine, id, timeout, |st| match st {
        Ok(st) => check(&st),
        Err(e) => Some(Err(e.to_string())),
    })
    .await;
    verdict.unwrap_or_else(|| {
        Err(format!(
            "did not become {goal} within {}s",
            timeout.as_secs()
        ))
    })
}

fn healthy(st: &ContainerStatus) -> Option<Result<(), String>> {
    match st.health.as_deref() {
        Some("healthy") => Some(Ok(())),
        None => Some(Err(
            "has no healthcheck but is depended on with condition service_healthy".into(),
        )),
        Some("unhealthy") => Some(Err("is unhealthy".into())),
        _ if exited(st) => Some(Err(format!("exited (code {})", st.exit_code.unwrap_or(-1)))),
        _ => None,
    }
}

fn completed(st: &ContainerStatus) -> Option<Result<(), String>> {
    if !exited(st) {
        return None;
    }
    Some(match st.exit_code {
        Some(0) => Ok(()),
        code => Err(format!(
            "did not complete successfully (exit code {})",
            code.unwrap_or(-1)
        )),
    })
}

fn exited(st: &ContainerStatus) -> bool {
    st.state == "exited" || st.state == "dead"
}

/// How far a removal must have got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    /// Its process is dead: network, ports and addresses are released.
    Dead,
    /// The engine has deleted it: its name is free again.
    Gone,
}

/// Wait until the removal of `id` (by this pass or anyone) has got as far as `stage`.
pub(super) async fn removed<E: Engine>(
    engine: &E,
    id: &str,
    name: &str,
    stage: Removed,
    timeout: Duration,
) -> Result<(), EngineError> {
    let verdict = until(engine, id, timeout, |st| match st {
        Err(EngineError::NoSuchContainer { .. }) => Some(Ok(())),
        Err(e) => Some(Err(e)),
        Ok(st) if stage == Removed::Dead && !st.running => Some(Ok(())),
        Ok(_) => None,
    })
    .await;
    verdict.unwrap_or_else(|| {
        Err(EngineError::Container {
            container: name.to_string(),
            message: format!("still being removed after {}s", timeout.as_secs()),
        })
    })
}

/// Read `id`'s state until `check` gives a verdict, waking on its events; `None` on timeout.
async fn until<E: Engine, T>(
    engine: &E,
    id: &str,
    timeout: Duration,
    mut check: impl FnMut(Result<ContainerStatus, EngineError>) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut changes = Some(engine.container_changes(id, SystemTime::now()));
    loop {
        if let Some(v) = check(engine.container_status(id).await) {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match &mut changes {
            Some(c) => tokio::select! {
                ev = c.next() => if !matches!(ev, Some(Ok(()))) {
                    tracing::debug!(container = id, "events stream ended; polling");
                    changes = None;
                },
                _ = tokio::time::sleep(left.min(SAFETY_NET)) => {}
            },
            None => tokio::time::sleep(left.min(POLL)).await,
        }
    }
}
