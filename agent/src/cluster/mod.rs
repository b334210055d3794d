//! Local kind clusters: desired state (`clusters.yaml`, `images.yaml`), a pure plan, and the
//! side effects behind narrow traits: the `kind` CLI, the Docker engine (registry wiring,
//! image builds) and the Kubernetes API (Flux bootstrap, via kube-rs server-side apply).

pub mod apply;
pub mod docker;
pub mod file;
pub mod flux;
pub mod host_services;
pub mod images;
pub mod kind;
pub mod kindconfig;
pub mod kube_ops;
pub mod nokind;
pub mod oci;
pub mod plan;
pub mod registry;
pub mod release;
pub mod run;
pub mod secrets;
pub mod status;
pub mod sync;
pub mod validate;

pub use apply::{apply, ApplyOptions, ClusterReport};
pub use file::{load, ClustersFile};
pub use plan::{plan, ClusterStep, ClustersObserved, Desired, DesiredCluster, ObservedCluster};
pub use status::{status, ClusterStatus};
pub use validate::{resolve, ResolvedClusters};

/// Field manager for every server-side apply, so `kubectl` shows who owns the fields.
pub const FIELD_MANAGER: &str = "macula-gitops";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "`kind` was not found on PATH; install kind (https://kind.sigs.k8s.io) to manage clusters"
    )]
    KindMissing,
    #[error("kind {args}: {stderr}")]
    Kind { args: String, stderr: String },
    #[error("cluster {cluster}: host port {port} is already in use on this host")]
    PortTaken { cluster: String, port: String },
    #[error("cluster {cluster}: not ready after {timeout:?}")]
    NotReady {
        cluster: String,
        timeout: std::time::Duration,
    },
    #[error("the container engine is not reachable: {source}")]
    Engine { source: bollard::errors::Error },
    #[error("docker {subject}: {source}")]
    Docker {
        subject: String,
        source: bollard::errors::Error,
    },
    #[error("{subject}: {message}")]
    Exec { subject: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{url}: sha256 is {actual}, {source_of_truth} {expected}; refusing to install it")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
        /// "flux.sha256 pins" or "<checksums url> lists".
        source_of_truth: String,
    },
    #[error("{url} has no entry for {name}; refusing to install an unverified manifest")]
    ChecksumMissing { url: String, name: String },
    #[error("{subject}: invalid manifest: {message}")]
    Manifest { subject: String, message: String },
    #[error("cluster {cluster}: {what}: {source}")]
    Kube {
        cluster: String,
        what: String,
        source: kube::Error,
    },
    #[error("cluster {cluster}: timed out after {timeout:?} waiting for {what}")]
    Timeout {
        cluster: String,
        what: String,
        timeout: std::time::Duration,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("cluster {cluster}: {message}")]
    Config { cluster: String, message: String },
    #[error("cluster {cluster}: {source}")]
    Oci {
        cluster: String,
        source: oci::OciError,
    },
    /// A cluster could not be prepared (its Flux release, its Secrets): nothing changed in it.
    #[error("cluster {cluster}: {message}")]
    Prepare { cluster: String, message: String },
    /// A cluster's step failed; `step` as `diff` prints it (it names the cluster).
    #[error("{step}: {source}")]
    Step {
        cluster: String,
        step: String,
        source: Box<ClusterError>,
    },
}

impl ClusterError {
    /// The cluster the error is about; `None` when it is about none in particular (the
    /// engine or `kind` missing, a release URL shared by several clusters).
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::PortTaken { cluster, .. }
            | Self::NotReady { cluster, .. }
            | Self::Kube { cluster, .. }
            | Self::Timeout { cluster, .. }
            | Self::Config { cluster, .. }
            | Self::Oci { cluster, .. }
            | Self::Prepare { cluster, .. }
            | Self::Step { cluster, .. } => Some(cluster),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
