//! The narrow door to the container engine. `apply` and the drift watcher only talk through
//! `Engine`; `docker::DockerEngine` (bollard) is the real one and the one tests use.

pub mod docker;
mod render;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::desired::spec::{BuildSpec, HookSpec, NetworkSpec, ServiceSpec, VolumeSpec};
use crate::plan::Observed;

pub use docker::DockerEngine;

/// A build context as the tar stream the engine's build API takes (`.git` and what the
/// context's `.dockerignore` excludes left out, symlinks kept as links). Shared by `build:`
/// services and `images build`.
pub fn pack_context(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    pack_context_with(dir, &[])
}

/// `pack_context` plus `extra` files at the root (an inline Dockerfile).
pub fn pack_context_with(
    dir: &std::path::Path,
    extra: &[(&str, &[u8])],
) -> std::io::Result<Vec<u8>> {
    let ignore = crate::desired::dockerignore::DockerIgnore::load(dir)?;
    let mut t = tar::Builder::new(Vec::new());
    t.follow_symlinks(false);
    pack_dir(&mut t, dir, "", &ignore)?;
    for (name, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data)?;
    }
    t.into_inner()
}

fn pack_dir(
    t: &mut tar::Builder<Vec<u8>>,
    dir: &std::path::Path,
    rel: &str,
    ignore: &crate::desired::dockerignore::DockerIgnore,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name() == ".git" {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let excluded = ignore.excluded(&child);
        if e.file_type()?.is_dir() {
            if !excluded {
                t.append_dir(&child, e.path())?;
            }
            if !excluded || ignore.has_exceptions() {
                pack_dir(t, &e.path(), &child, ignore)?;
            }
        } else if !excluded {
            t.append_path_with_name(e.path(), &child)?;
        }
    }
    Ok(())
}

/// A timeout says which limit it hit, not just "Timeout error".
fn unreachable_cause(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::RequestTimeoutError => format!(
            "no answer to /version within {}s: the socket accepts but the engine does not respond",
            docker::ANSWER_WITHIN.as_secs()
        ),
        other => other.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {endpoint}: is Docker running? ({})", unreachable_cause(.source))]
    Unreachable {
        endpoint: String,
        source: bollard::errors::Error,
    },
    #[error("pulling image {image} from {registry} failed: {message}")]
    Pull {
        image: String,
        registry: String,
        message: String,
    },
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
    #[error("container {container}: host port {port} is already allocated (another container or process uses it)")]
    PortAllocated { container: String, port: String },
    #[error("{op} {subject}: {source}")]
    Api {
        op: &'static str,
        subject: String,
        source: bollard::errors::Error,
    },
    #[error("container {container}: {message}")]
    Container { container: String, message: String },
    /// The engine is removing it (a `docker rm -f` in progress): it cannot be started, and
    /// its name is free once the removal ends.
    #[error("container {container}: its {hook} hook exited with status {code}{output}")]
    Hook {
        container: String,
        /// `post_start[0]`, `pre_stop[1]`.
        hook: String,
        code: i64,
        /// `: ` and the last line the hook wrote, when it wrote one.
        output: String,
    },
    #[error("container {container} is being removed")]
    BeingRemoved { container: String },
    #[error("container {container} does not exist")]
    NoSuchContainer { container: String },
    #[error("container name {container} is already in use")]
    NameInUse { container: String },
    #[error("{subject}: {source}")]
    Io {
        subject: String,
        source: std::io::Error,
    },
}

/// What `create_container` needs beyond the spec: who owns it and where repo files live.
#[derive(Debug, Clone)]
pub struct CreateContext {
    pub host: String,
    pub revision: Option<String>,
    /// Host path for each bind of a repo copy or a data directory, by mount target.
    pub mount_paths: BTreeMap<String, PathBuf>,
    /// Anonymous volumes of the container being replaced, by target: reused by the new one
    /// (for `- /cache` mounts and image `VOLUME`s) so a recreate keeps their data.
    pub inherited: BTreeMap<String, String>,
    /// Create under this name instead of the spec's: a replacement made while the container
    /// it replaces still holds the name (renamed once the name is free).
    pub name: Option<String>,
}

/// Live state of one container, as `apply` reads it while waiting on dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub state: String,
    /// Its process runs (`state` says `removing` both before and after a removal kills it).
    pub running: bool,
    pub health: Option<String>,
    pub exit_code: Option<i64>,
}

pub trait Engine: Send + Sync {
    /// Everything the planner compares, for `host`: all containers (to see name clashes),
    /// networks, volumes and local images.
    fn observe(&self) -> impl Future<Output = Result<Observed, EngineError>> + Send;
    fn create_network(
        &self,
        spec: &NetworkSpec,
        host: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn create_volume(
        &self,
        spec: &VolumeSpec,
        host: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn pull_image(&self, image: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn build_image(
        &self,
        build: &BuildSpec,
        image: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Create (not start) the container; returns its id. `Err(NameInUse)` when a container
    /// holds the name, also one the engine is still removing.
    fn create_container(
        &self,
        spec: &ServiceSpec,
        ctx: &CreateContext,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start_container(
        &self,
        id: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Run a lifecycle hook (`hook` names it, `post_start[0]`) in the running container and
    /// wait for it to end; a non-zero exit is `Err(Hook)`.
    fn run_hook(
        &self,
        id: &str,
        name: &str,
        hook: &str,
        spec: &HookSpec,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn restart_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn rename_container(
        &self,
        id: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stop (with the default grace period) and remove; anonymous volumes stay. Gone already:
    /// `Ok`; someone else removing it: `Err(BeingRemoved)`.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Remove with its anonymous volumes (prune with `--prune-volumes`); named volumes stay.
    fn remove_container_and_volumes(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// `Err(NoSuchContainer)` once it is gone.
    fn container_status(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ContainerStatus, EngineError>> + Send;
    /// One item each time the container may have changed state (started, died, destroyed, a
    /// new health status), from `since` on: a waiter reads `container_status` again at once
    /// instead of polling. The stream ends or errs when the engine's stream does; waiters then
    /// fall back to polling.
    fn container_changes(&self, id: &str, since: SystemTime) -> Changes;
}

/// See [`Engine::container_changes`].
pub type Changes = futures::stream::BoxStream<'static, Result<(), EngineError>>;
