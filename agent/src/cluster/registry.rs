//! Registry wiring as kind's local-registry guide (and ctlptl) do it: the registry container
//! joins the `kind` network under its in-cluster name, every node's containerd gets a
//! `hosts.toml` for both the host name (`localhost:5001`) and the in-cluster name
//! (`kind-registry:5000`), and the KEP-1755 ConfigMap tells tools where the registry is.

use serde_json::{json, Value};

use super::docker::{NodeContainer, NodeOps};
use super::file::{split_host_port, RegistrySpec};
use super::ClusterError;

pub const CERTS_DIR: &str = "/etc/containerd/certs.d";
pub const HELP_URL: &str = "https://kind.sigs.k8s.io/docs/user/local-registry/";

/// Where the registry container is and which network the nodes are on.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub spec: RegistrySpec,
    /// The registry's container (from the host stacks' catalog).
    pub container: String,
    /// The nodes' network (`kind`, or what KIND_EXPERIMENTAL_DOCKER_NETWORK names).
    pub network: String,
}

impl Wiring {
    /// The in-cluster alias: the host part of `cluster` (`kind-registry`).
    pub fn alias(&self) -> &str {
        split_host_port(&self.spec.cluster)
            .map(|(h, _)| h)
            .unwrap_or(&self.spec.cluster)
    }

    /// (path, content) of every `hosts.toml` a node needs.
    pub fn hosts_files(&self) -> Vec<(String, String)> {
        let content = format!("[host.\"http://{}\"]\n", self.spec.cluster);
        let mut names = vec![self.spec.host.clone(), self.spec.cluster.clone()];
        names.dedup();
        names
            .into_iter()
            .map(|n| (format!("{CERTS_DIR}/{n}/hosts.toml"), content.clone()))
            .collect()
    }

    /// The KEP-1755 ConfigMap.
    pub fn configmap(&self) -> Value {
        let hosting = format!(
            "host: \"{}\"\nhostFromContainerRuntime: \"{}\"\nhostFromClusterNetwork: \"{}\"\nhelp: \"{HELP_URL}\"\n",
            self.spec.host, self.spec.cluster, self.spec.cluster
        );
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": hosting},
        })
    }

    /// Whether the node-side wiring is in place: (network+alias, every hosts.toml).
    pub async fn observe(
        &self,
        ops: &impl NodeOps,
        nodes: &[NodeContainer],
    ) -> Result<(bool, bool), ClusterError> {
        let network = ops
            .aliases(&self.network, &self.container)
            .await?
            .is_some_and(|a| a.iter().any(|a| a == self.alias()));
        let mut files = true;
        'nodes: for n in nodes {
            for (path, want) in self.hosts_files() {
                if ops.read_file(&n.container, &path).await?.as_deref() != Some(want.as_str()) {
                    files = false;
                    break 'nodes;
                }
            }
        }
        Ok((network, files))
    }

    /// Bring the node side in line; returns what changed (empty when nothing did).
    pub async fn wire(
        &self,
        ops: &impl NodeOps,
        nodes: &[NodeContainer],
    ) -> Result<Vec<String>, ClusterError> {
        let mut changed = Vec::new();
        match ops.aliases(&self.network, &self.container).await? {
            Some(a) if a.iter().any(|a| a == self.alias()) => {}
            Some(_) => {
                // Attached without the alias (e.g. by hand): Docker cannot add an alias in
                // place, so say so instead of silently leaving nodes unable to resolve it.
                return Err(ClusterError::Exec {
                    subject: format!("registry container {}", self.container),
                    message: format!(
                        "attached to network {} without alias {}; disconnect it so it can be reconnected with the alias",
                        self.network,
                        self.alias()
                    ),
                });
            }
            None => {
                ops.connect(&self.network, &self.container, self.alias())
                    .await?;
                changed.push(format!(
                    "connected {} to {} as {}",
                    self.container,
                    self.network,
                    self.alias()
                ));
            }
        }
        for n in nodes {
            for (path, want) in self.hosts_files() {
                if ops.read_file(&n.container, &path).await?.as_deref() != Some(want.as_str()) {
                    ops.write_file(&n.container, &path, &want).await?;
                    tracing::info!(node = %n.container, path = %path, "wrote containerd registry config");
                    changed.push(format!("{}:{path}", n.container));
                }
            }
        }
        Ok(changed)
    }
}
