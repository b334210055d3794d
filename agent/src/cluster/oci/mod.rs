//! The local loop: a cluster with `flux.source: oci` gets its directory of the applied revision
//! as a Flux OCI artifact in the local registry, exactly as `flux push artifact` makes one
//! (fluxcd/pkg `oci`): an OCI image manifest whose config has Flux's config media type and whose
//! one layer is the directory as a gzipped tarball, annotated with the source, the revision
//! (`<ref>@sha1:<commit>`) and the creation time. Flux's OCIRepository follows the moving tag,
//! so a local commit reaches the cluster without a remote.
//!
//! `pack` builds the layer (deterministic: same tree, same digest) while the desired state is
//! validated, so a symlink refuses the revision before anything changes; `distribution` speaks
//! the OCI distribution API to the registry (observe the moving tag, push blobs and manifests).

pub mod distribution;
pub mod pack;

use std::path::PathBuf;
use std::sync::Arc;

pub use distribution::Registry;
pub use pack::pack;

/// Manifest media type (`flux push artifact` pushes an OCI image manifest).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Flux's config media type (fluxcd/pkg `oci.ConfigMediaType`).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// Flux's content layer media type (fluxcd/pkg `oci.ContentMediaType`).
pub const CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// A cluster directory packed as Flux's content layer. Cheap to clone (the bytes are shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The gzipped tarball.
    pub layer: Arc<Vec<u8>>,
    /// `sha256:<hex>` of `layer`: what the registry and Flux identify it by.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tarball (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// Repo-relative paths of the files in it, sorted.
    pub files: Vec<String>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("digest", &self.digest)
            .field("bytes", &self.layer.len())
            .field("files", &self.files.len())
            .finish()
    }
}

impl Artifact {
    /// `sha256:0123456789ab`: enough to tell artifacts apart in `diff` and logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..self.digest.len().min("sha256:".len() + 12)]
    }
}

/// What the push records about where the artifact came from.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The repository URL (credentials removed) for `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// The ref applied (branch, tag) — `HEAD` when the source follows the remote's default.
    pub reference: Option<String>,
    /// The commit applied; `None` for a local directory that is not a commit.
    pub commit: Option<String>,
}

impl Provenance {
    /// `org.opencontainers.image.revision` as Flux writes it for git: `<ref>@sha1:<commit>`.
    pub fn revision(&self) -> Option<String> {
        let commit = self.commit.as_deref()?;
        let reference = self.reference.as_deref().unwrap_or("HEAD");
        Some(format!("{reference}@sha1:{commit}"))
    }

    /// The tag of this revision: the commit id, or the content digest without a commit.
    pub fn revision_tag(&self, artifact: &Artifact) -> String {
        match &self.commit {
            Some(c) => c.clone(),
            None => format!(
                "sha256-{}",
                &artifact.digest.trim_start_matches("sha256:")[..12]
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{}: is a symbolic link; an oci artifact holds only files and directories (symlinks are refused like everywhere in the repo)", path.display())]
    Symlink { path: PathBuf },
    #[error("{}: is neither a file nor a directory", path.display())]
    Special { path: PathBuf },
    #[error("{}: {reference:?} points outside the repo", path.display())]
    Escapes { path: PathBuf, reference: String },
    #[error("{}: the artifact would exceed {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry {registry}: {what}: {message}")]
    Registry {
        registry: String,
        what: String,
        message: String,
    },
}

impl OciError {
    /// The repo file the problem is in, for a diagnostic.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            OciError::Symlink { path }
            | OciError::Special { path }
            | OciError::Escapes { path, .. }
            | OciError::TooLarge { path, .. }
            | OciError::Io { path, .. } => Some(path),
            OciError::Registry { .. } => None,
        }
    }
}
