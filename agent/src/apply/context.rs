//! What a container needs besides its spec: host paths of repo copies, data directories and
//! generated files (made or verified now), and the anonymous volumes it takes over.

use std::collections::BTreeMap;

use super::ApplyContext;
use crate::desired::spec::{MountSource, ServiceSpec};
use crate::engine::{CreateContext, EngineError};
use crate::plan::ObservedMount;
use crate::{data, state};

/// The old container's anonymous volumes the new one takes over, by target: those at a target
/// the spec leaves anonymous (`- /cache`) or does not mount at all (an image `VOLUME`), as
/// compose v2's `mergeMounts`/`getInheritedVolume` (v1: `get_container_data_volumes`) do. A
/// target the spec now gives a named volume or a bind gets that instead.
pub(super) fn inherited(spec: &ServiceSpec, old: &[ObservedMount]) -> BTreeMap<String, String> {
    old.iter()
        .filter(|m| m.is_anonymous())
        .filter(|m| {
            spec.mounts
                .iter()
                .find(|s| s.target == m.target)
                .is_none_or(|s| s.source == MountSource::Anonymous)
        })
        .map(|m| (m.target.clone(), m.volume.clone()))
        .collect()
}

pub(super) fn create_context(
    spec: &ServiceSpec,
    host: &str,
    ctx: &ApplyContext,
) -> Result<CreateContext, EngineError> {
    let mut mount_paths = BTreeMap::new();
    let fail = |message: String| EngineError::Container {
        container: spec.container_name.clone(),
        message,
    };
    for m in &spec.mounts {
        match &m.source {
            MountSource::Repo { digest, local, .. } => {
                let p = state::materialise(&ctx.state_dir, digest, local)
                    .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            MountSource::Data { path, seed } => {
                let (p, _) = data::ensure(&ctx.data_root, &spec.stack, path, seed.as_deref())
                    .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            MountSource::Generated {
                name,
                digest,
                content,
            } => {
                let owner = m
                    .options
                    .file_owner
                    .as_ref()
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                let p = state::materialise_bytes(
                    &ctx.state_dir,
                    digest,
                    name,
                    &content.0,
                    m.options.file_mode.unwrap_or(0o444),
                    owner,
                )
                .map_err(|e| fail(e.to_string()))?;
                mount_paths.insert(m.target.clone(), p);
            }
            _ => {}
        }
    }
    Ok(CreateContext {
        host: host.to_string(),
        revision: ctx.revision.clone(),
        mount_paths,
        inherited: BTreeMap::new(),
        name: None,
    })
}
