//! Replacing one container without waiting on the engine's slow part. Removing a container is
//! kill → die (its process gone, its network, ports and addresses released) → its files deleted
//! → destroy (only now is its name free); on this engine the deletion is most of the time. So
//! the new container is created under a temporary name while the old one still exists, started
//! the moment the old one is dead, and renamed once the name is free: the service is back about
//! when the removal ends, not a create and a start later.
//!
//! If the new container cannot be created, the old one is left as it was. If it cannot start
//! early (the engine still holding something of the old one), it is started again once the old
//! one is gone. A new container that ends up not started is removed, as any is.
//!
//! Someone else's removal (`docker rm -f`: the engine reports the kill and die at once, then
//! deletes the files, and only then frees the name) never fails a pass that meets it: a create
//! refused for the name ([`create`]), a start refused or finding the container gone
//! (`Removal::Underway`), our own removal refused as "already in progress" ([`remove`]) each
//! wait for that removal to end.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::wait::{self, Removed};
use crate::desired::spec::ServiceSpec;
use crate::engine::{CreateContext, Engine, EngineError};

/// How long a removal may take before the service counts as failed.
pub(super) const REMOVAL: Duration = Duration::from_secs(30);

/// Who removes the old container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    /// This pass (a recreate).
    Ours,
    /// Someone else already is (`docker rm -f` by hand, seen as "being removed").
    Underway,
}

/// Replace container `old` with a new one from `spec`; returns the new id.
pub(super) async fn replace<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    mut cctx: CreateContext,
    old: &str,
    removal: Removal,
    gate: &Semaphore,
) -> Result<String, EngineError> {
    let name = spec.container_name.as_str();
    let t = std::time::Instant::now();
    let ms = |t: std::time::Instant| t.elapsed().as_millis() as u64;
    let temporary = format!("{name}-{}", old.get(..12).unwrap_or(old));
    cctx.name = Some(temporary.clone());
    let new = {
        let _permit = gate.acquire().await;
        match engine.create_container(spec, &cctx).await {
            // A replace of this same container was interrupted (the agent stopped) after its
            // create: that leftover was never started, and is ours by its name.
            Err(EngineError::NameInUse { .. }) => {
                engine.remove_container(&temporary).await?;
                engine.create_container(spec, &cctx).await?
            }
            r => r?,
        }
    };
    tracing::debug!(
        container = name,
        ?removal,
        ms = ms(t),
        "replacement created"
    );
    let remove = async {
        match removal {
            Removal::Ours => remove(engine, old).await,
            Removal::Underway => wait::removed(engine, old, name, Removed::Gone, REMOVAL).await,
        }
    };
    let start_early = async {
        wait::removed(engine, old, name, Removed::Dead, REMOVAL).await?;
        tracing::debug!(container = name, ms = ms(t), "old container dead");
        let _permit = gate.acquire().await;
        let r = engine.start_container(&new, name).await;
        tracing::debug!(
            container = name,
            ms = ms(t),
            ok = r.is_ok(),
            "replacement started"
        );
        r
    };
    let (removed, started) = tokio::join!(remove, start_early);
    let result = match (removed, started) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(early)) => {
            tracing::debug!(container = name, error = %early, "started again after the removal");
            let _permit = gate.acquire().await;
            engine.start_container(&new, name).await
        }
    };
    if let Err(e) = result {
        let _ = engine.remove_container(&new).await;
        return Err(e);
    }
    take_name(engine, &new, name).await?;
    tracing::debug!(container = name, ms = ms(t), "replacement named");
    Ok(new)
}

/// Create `spec`'s container. Refused for its name by a container the engine is still
/// removing (or a dead one), it waits until that one is gone and creates once more; a name
/// held by a live container stays refused (`NameInUse` naming it).
pub(super) async fn create<E: Engine>(
    engine: &E,
    spec: &ServiceSpec,
    cctx: &CreateContext,
    gate: &Semaphore,
) -> Result<String, EngineError> {
    let name = {
        let _permit = gate.acquire().await;
        match engine.create_container(spec, cctx).await {
            Err(EngineError::NameInUse { container }) => container,
            r => return r,
        }
    };
    match engine.container_status(&name).await {
        Ok(st) if st.state == "removing" || st.state == "dead" => {
            wait::removed(engine, &name, &name, Removed::Gone, REMOVAL).await?
        }
        // Gone since the refusal.
        Err(EngineError::NoSuchContainer { .. }) => {}
        Ok(_) => return Err(EngineError::NameInUse { container: name }),
        Err(e) => return Err(e),
    }
    tracing::debug!(container = %name, "the name is free after a removal; creating again");
    let _permit = gate.acquire().await;
    engine.create_container(spec, cctx).await
}

/// This pass's removal of `id`; one someone else has under way already is waited for.
pub(super) async fn remove<E: Engine>(engine: &E, id: &str) -> Result<(), EngineError> {
    match engine.remove_container(id).await {
        Err(EngineError::BeingRemoved { .. }) => {
            wait::removed(engine, id, id, Removed::Gone, REMOVAL).await
        }
        r => r,
    }
}

/// Rename `id` to `name`. The engine frees a removed container's name just after it reports
/// it gone, so a refusal is retried briefly.
async fn take_name<E: Engine>(engine: &E, id: &str, name: &str) -> Result<(), EngineError> {
    let mut attempt = 0;
    loop {
        match engine.rename_container(id, name).await {
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::debug!(container = name, error = %e, "name not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}
