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
        revision: ctx.revision_of(&spec.key()),
        mount_paths,
        inherited: BTreeMap::new(),
        name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{interpolate::Env, load_desired};

    #[test]
    fn a_pinned_service_is_labelled_with_the_revision_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hosts.yaml"),
            "hosts:\n  default: {stacks: [s]}\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("stacks/s")).unwrap();
        std::fs::write(
            dir.path().join("stacks/s/compose.yaml"),
            "services:\n  app: {image: busybox:1}\n  other: {image: busybox:1}\n",
        )
        .unwrap();
        let d = load_desired(dir.path(), "h", &Env::default()).unwrap();
        let ctx = ApplyContext {
            revision: Some("bad".into()),
            pins: Some(crate::rollout::Pins {
                revision: "good".into(),
                desired_root: dir.path().into(),
                services: ["s/app".to_string()].into(),
            }),
            state_dir: dir.path().join("state"),
            data_root: dir.path().join("data"),
            prune_volumes: false,
            health_timeout: std::time::Duration::from_secs(1),
        };
        let revision = |service: &str| {
            let spec = d.services.iter().find(|s| s.service == service).unwrap();
            create_context(spec, "h", &ctx).unwrap().revision
        };
        assert_eq!(revision("app").as_deref(), Some("good"));
        assert_eq!(revision("other").as_deref(), Some("bad"));
    }
}
