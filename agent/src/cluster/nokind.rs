//! Cluster state for `diff` on a machine without the `kind` binary. The clusters are on the
//! engine either way: nodes are found by kind's labels, and the admin kubeconfig is the one kubeadm
//! wrote on the control-plane node — what `kind get kubeconfig` itself reads and rewrites
//! to the API server's loopback port. Creating or deleting a cluster still needs kind.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;

use super::docker::{ClusterEngine, NodeOps};
use super::file::Role;
use super::kind::KindCli;
use super::ClusterError;

/// Where kubeadm writes the cluster-admin kubeconfig on a control-plane node.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// `admin.conf` with its `server:` pointed at `https://<host>:<port>` (the node's published
/// API server port), as `kind get kubeconfig` rewrites it; unchanged without a published port.
pub fn external_kubeconfig(admin_conf: &str, published: Option<(&str, u16)>) -> String {
    let Some((host, port)) = published else {
        return admin_conf.to_string();
    };
    admin_conf
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server: ") {
            Some(_) => {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}server: https://{host}:{port}")
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// [`KindCli`] from the engine alone: lists and reads clusters, refuses to change them.
pub struct EngineKind {
    pub engine: ClusterEngine,
}

impl EngineKind {
    async fn control_plane(&self, name: &str) -> Result<String, ClusterError> {
        let nodes = self.engine.kind_nodes().await?;
        nodes
            .get(name)
            .and_then(|n| n.iter().find(|n| n.node.role == Role::ControlPlane))
            .map(|n| n.container.clone())
            .ok_or_else(|| ClusterError::Config {
                cluster: name.into(),
                message: "no control-plane node container".into(),
            })
    }

    /// The loopback address and port the node publishes the API server (6443/tcp) on.
    async fn published_api(&self, container: &str) -> Result<Option<(String, u16)>, ClusterError> {
        let c = self
            .engine
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|source| ClusterError::Docker {
                subject: format!("inspect {container}"),
                source,
            })?;
        let binding = c
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get("6443/tcp").cloned().flatten())
            .and_then(|b| b.into_iter().next());
        Ok(binding.and_then(|b| {
            let port = b.host_port?.parse().ok()?;
            let host = b.host_ip.filter(|h| !h.is_empty() && h != "0.0.0.0");
            Some((host.unwrap_or_else(|| "127.0.0.1".into()), port))
        }))
    }
}

impl KindCli for EngineKind {
    async fn clusters(&self) -> Result<Vec<String>, ClusterError> {
        Ok(self.engine.kind_nodes().await?.into_keys().collect())
    }

    async fn create(&self, _: &str, _: &Path, _: Duration) -> Result<(), ClusterError> {
        Err(ClusterError::KindMissing)
    }

    async fn delete(&self, _: &str) -> Result<(), ClusterError> {
        Err(ClusterError::KindMissing)
    }

    async fn kubeconfig(&self, name: &str) -> Result<String, ClusterError> {
        let node = self.control_plane(name).await?;
        let conf = self
            .engine
            .read_file(&node, ADMIN_CONF)
            .await?
            .ok_or_else(|| ClusterError::Config {
                cluster: name.into(),
                message: format!("{node} has no {ADMIN_CONF}"),
            })?;
        let api = self.published_api(&node).await?;
        Ok(external_kubeconfig(
            &conf,
            api.as_ref().map(|(h, p)| (h.as_str(), *p)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_is_pointed_at_the_published_port() {
        let conf = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAAA\n    server: https://dev-control-plane:6443\n  name: dev\n";
        assert_eq!(
            external_kubeconfig(conf, Some(("127.0.0.1", 40123))),
            conf.replace("https://dev-control-plane:6443", "https://127.0.0.1:40123")
        );
        assert_eq!(external_kubeconfig(conf, None), conf);
    }
}
