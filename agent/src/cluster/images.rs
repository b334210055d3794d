//! `desired-state/images.yaml`: app images built from source and pushed to the local
//! registry (the job of the design's `build-and-push.sh`).
//!
//! ```yaml
//! registry: localhost:5001          # optional; default: clusters.yaml registry.host
//! images:
//!   macula-console:
//!     context: ../macula-console    # relative to the repo root
//!     outside_repo: true            # required when the context is outside the repo
//!     dockerfile: Dockerfile        # relative to the context (default Dockerfile)
//!     repository: macula/console    # default: the image's key
//!     target: runtime               # optional build stage
//!     build_args: {MIX_ENV: prod}
//! ```
//!
//! The tag is `src-<12 hex>` of a sha256 over the context (paths, modes, contents, symlink
//! targets; `.git` skipped) and the build settings, so a changed source yields a new tag and
//! an unchanged one is found in the engine and not rebuilt.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use futures::StreamExt;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ClusterError;
use crate::diag::Diagnostics;
use crate::input::Env;
use crate::input::{deserialize_at, read_yaml};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImagesFile {
    pub registry: Option<String>,
    #[serde(default)]
    pub images: IndexMap<String, ImageSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageSpec {
    pub context: String,
    #[serde(default)]
    pub outside_repo: bool,
    pub dockerfile: Option<String>,
    pub repository: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
}

const IMAGE_KEYS: &[&str] = &[
    "context",
    "outside_repo",
    "dockerfile",
    "repository",
    "target",
    "build_args",
];

/// Load and check `images.yaml`: unknown keys, contexts that exist, the repo boundary.
pub fn load(path: &Path, env: &Env, repo_root: &Path) -> (Option<ImagesFile>, Diagnostics) {
    let mut d = Diagnostics::default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let rel = Path::new(path.file_name().unwrap_or(path.as_os_str()));
    let Some((value, source)) = read_yaml(dir, rel, Some(env), &mut d) else {
        return (None, d);
    };
    let supported = |p: &str| -> &'static [&'static str] {
        match p.split('.').count() {
            1 => &["registry", "images"],
            3 if p.starts_with("images.") => IMAGE_KEYS,
            _ => &[],
        }
    };
    let Some(f) = deserialize_at::<ImagesFile>(value, "", &source, &supported, &mut d) else {
        return (None, d);
    };
    let idx = source.lines;
    let path = rel;
    for (name, img) in &f.images {
        let at = format!("images.{name}.context");
        match context_dir(repo_root, img) {
            Ok(dir) => {
                let df = dir.join(img.dockerfile.as_deref().unwrap_or("Dockerfile"));
                if !df.is_file() {
                    d.error(
                        path,
                        Some(&idx),
                        format!("images.{name}.dockerfile"),
                        format!("{} does not exist", df.display()),
                    );
                }
            }
            Err(msg) => d.error(path, Some(&idx), at, msg),
        }
    }
    (Some(f), d)
}

/// The context directory; outside the repo only with `outside_repo: true`.
pub fn context_dir(repo_root: &Path, img: &ImageSpec) -> Result<PathBuf, String> {
    let rel = Path::new(&img.context);
    if rel.is_absolute() {
        return Err(format!(
            "{:?} must be relative to the repo root",
            img.context
        ));
    }
    let dir = repo_root
        .join(rel)
        .canonicalize()
        .map_err(|_| format!("{:?} does not exist", img.context))?;
    let root = repo_root
        .canonicalize()
        .map_err(|e| format!("repo root: {e}"))?;
    let leaves = !dir.starts_with(&root) || rel.components().any(|c| c == Component::ParentDir);
    if leaves && !img.outside_repo {
        return Err(format!(
            "{:?} is outside the repo; set outside_repo: true to build a sibling repo",
            img.context
        ));
    }
    if !dir.is_dir() {
        return Err(format!("{:?} is not a directory", img.context));
    }
    Ok(dir)
}

/// Content tag of a context (its tree digest) with its build settings.
pub fn content_tag(context_digest: &str, img: &ImageSpec) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(img.dockerfile.as_deref().unwrap_or("Dockerfile").as_bytes());
    field(img.target.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &img.build_args {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(context_digest.as_bytes());
    format!("src-{}", &hex::encode(h.finalize())[..12])
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImagesReport {
    pub tried: usize,
    pub failed: usize,
    /// Image references built (or found unchanged) and pushed.
    pub images: Vec<String>,
    pub errors: Vec<String>,
}

/// Build `names` (all when empty) and push them when `push`. Progress lines go to `progress`.
pub async fn build(
    engine: &super::docker::ClusterEngine,
    file: &ImagesFile,
    repo_root: &Path,
    registry: &str,
    names: &[String],
    push: bool,
    progress: &mut (dyn FnMut(&str) + Send),
) -> ImagesReport {
    let mut report = ImagesReport::default();
    for name in names.iter().filter(|n| !file.images.contains_key(*n)) {
        report.tried += 1;
        report.failed += 1;
        report.errors.push(format!(
            "unknown image {name} (images.yaml has: {})",
            file.images.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for (name, img) in &file.images {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        report.tried += 1;
        match build_one(engine, name, img, repo_root, registry, push, progress).await {
            Ok(r) => report.images.push(r),
            Err(e) => {
                progress(&format!("{name}: failed: {e}"));
                report.failed += 1;
                report.errors.push(e.to_string());
            }
        }
    }
    report
}

async fn build_one(
    engine: &super::docker::ClusterEngine,
    name: &str,
    img: &ImageSpec,
    repo_root: &Path,
    registry: &str,
    push: bool,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, ClusterError> {
    let repository = format!("{registry}/{}", img.repository.as_deref().unwrap_or(name));
    let err = |message: String| ClusterError::Image {
        image: repository.clone(),
        message,
    };
    let dir = context_dir(repo_root, img).map_err(err)?;
    let digest = crate::desired::paths::digest(&dir).map_err(|source| ClusterError::Io {
        path: dir.clone(),
        source,
    })?;
    let tag = content_tag(&digest, img);
    let reference = format!("{repository}:{tag}");
    if engine.docker.inspect_image(&reference).await.is_ok() {
        progress(&format!("{name}: {reference} unchanged, not rebuilt"));
    } else {
        progress(&format!("{name}: building {reference}"));
        let archive = crate::engine::pack_context(&dir).map_err(|source| ClusterError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut opts = BuildImageOptionsBuilder::default()
            .t(&reference)
            .dockerfile(img.dockerfile.as_deref().unwrap_or("Dockerfile"))
            .rm(true)
            .buildargs(
                &img.build_args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .labels(&std::collections::HashMap::from([(
                "io.macula.gitops.source-tag",
                tag.as_str(),
            )]));
        if let Some(t) = &img.target {
            opts = opts.target(t);
        }
        let mut stream = engine.docker.build_image(
            opts.build(),
            None,
            Some(bollard::body_full(axum::body::Bytes::from(archive))),
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| err(e.to_string()))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(err(detail));
            }
            for line in info
                .stream
                .iter()
                .flat_map(|s| s.lines())
                .filter(|l| !l.trim().is_empty())
            {
                progress(&format!("{name}: {}", line.trim_end()));
            }
        }
    }
    if push {
        progress(&format!("{name}: pushing {reference}"));
        let mut stream = engine.docker.push_image(
            &repository,
            Some(PushImageOptionsBuilder::default().tag(&tag).build()),
            None,
        );
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| err(format!("push: {e}")))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(err(format!("push: {detail}")));
            }
            if let Some(status) = info.status {
                // Layer progress repeats many times per layer; show each status once.
                if status != last
                    && info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.current)
                        .is_none()
                {
                    progress(&format!("{name}: {status}"));
                }
                last = status;
            }
        }
        progress(&format!("{name}: pushed {reference}"));
    }
    Ok(reference)
}
