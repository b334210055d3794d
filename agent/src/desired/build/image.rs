//! A service's `build:` to the `BuildSpec` the engine's build API is called with.

use super::service::Ctx;
use super::units::parse_bytes;
use super::Report;
use crate::desired::compose::{Build, Service};
use crate::desired::paths::{self, resolve_inside};
use crate::desired::spec::{BuildOptions, BuildSpec, INLINE_DOCKERFILE};

pub(super) fn build_spec(
    ctx: &Ctx,
    b: &Build,
    svc: &Service,
    base: &str,
    r: &mut Report,
) -> Option<BuildSpec> {
    let path = format!("{base}.build.context");
    let context = match resolve_inside(ctx.root, &ctx.stack.dir, &b.context) {
        Ok(c) => c,
        Err(e) => {
            r.err(path, e.to_string());
            return None;
        }
    };
    let context_digest = match paths::context_digest(&context) {
        Ok(d) => d,
        Err(e) => {
            r.err(path, format!("cannot read build context: {e}"));
            return None;
        }
    };
    if b.dockerfile.is_some() && b.dockerfile_inline.is_some() {
        r.err(
            format!("{base}.build.dockerfile_inline"),
            "dockerfile and dockerfile_inline cannot both be set",
        );
    }
    if b.platforms.len() > 1 {
        r.err(
            format!("{base}.build.platforms"),
            "one engine builds one platform: list at most one",
        );
    }
    if let (Some(p), Some(first)) = (&svc.platform, b.platforms.first()) {
        if p != first {
            r.err(
                format!("{base}.build.platforms"),
                format!("the service platform {p:?} must be among build.platforms"),
            );
        }
    }
    for key in ["tags", "ulimits", "isolation"] {
        let set = match key {
            "tags" => !b.tags.is_empty(),
            "ulimits" => !b.ulimits.is_empty(),
            _ => b.isolation.is_some(),
        };
        if set {
            r.warn(
                format!("{base}.build.{key}"),
                "ignored: the engine's build API used by the agent has no such option",
            );
        }
    }
    let shm_size = b
        .shm_size
        .as_ref()
        .and_then(|s| s.0.as_deref())
        .and_then(|s| r.check(format!("{base}.build.shm_size"), parse_bytes(s)));
    let args = b
        .args
        .0
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone()
                    .or_else(|| ctx.env.get(k).map(str::to_string))
                    .unwrap_or_default(),
            )
        })
        .collect();
    Some(BuildSpec {
        context,
        context_rel: b.context.clone(),
        dockerfile: match (&b.dockerfile, &b.dockerfile_inline) {
            (_, Some(_)) => INLINE_DOCKERFILE.into(),
            (Some(d), None) => d.clone(),
            (None, None) => "Dockerfile".into(),
        },
        args,
        context_digest,
        options: BuildOptions {
            target: b.target.clone(),
            dockerfile_inline: b.dockerfile_inline.clone(),
            labels: b.labels.filled(),
            network: b.network.clone(),
            shm_size,
            extra_hosts: b
                .extra_hosts
                .0
                .iter()
                .map(|(h, ip)| format!("{h}:{ip}"))
                .collect(),
            cache_from: b.cache_from.clone(),
            no_cache: b.no_cache,
            pull: b.pull,
            platform: b
                .platforms
                .first()
                .cloned()
                .or_else(|| svc.platform.clone()),
        },
    })
}
