//! The Docker engine operations cluster management needs, behind a narrow trait; the real
//! implementation is bollard. kind nodes are found by the labels kind puts on them.

use std::collections::{BTreeMap, HashMap};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use super::file::{PortMapping, PortProtocol, Role};
use super::plan::ObservedNode;
use super::ClusterError;

/// kind's labels on node containers.
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";

/// One kind node container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContainer {
    pub container: String,
    pub node: ObservedNode,
}

pub trait NodeOps {
    /// Node containers of every kind cluster, by cluster name (load balancers excluded).
    fn kind_nodes(
        &self,
    ) -> impl std::future::Future<Output = Result<BTreeMap<String, Vec<NodeContainer>>, ClusterError>>;
    /// Aliases `container` has on `network`; `None` when it is not attached.
    fn aliases(
        &self,
        network: &str,
        container: &str,
    ) -> impl std::future::Future<Output = Result<Option<Vec<String>>, ClusterError>>;
    fn connect(
        &self,
        network: &str,
        container: &str,
        alias: &str,
    ) -> impl std::future::Future<Output = Result<(), ClusterError>>;
    /// Contents of `path` in the container, `None` when it does not exist.
    fn read_file(
        &self,
        container: &str,
        path: &str,
    ) -> impl std::future::Future<Output = Result<Option<String>, ClusterError>>;
    fn write_file(
        &self,
        container: &str,
        path: &str,
        content: &str,
    ) -> impl std::future::Future<Output = Result<(), ClusterError>>;
}

/// The real engine.
#[derive(Clone)]
pub struct ClusterEngine {
    pub docker: Docker,
}

impl ClusterEngine {
    pub async fn connect() -> Result<Self, ClusterError> {
        let docker = crate::engine::docker::client()
            .await
            .map_err(|source| ClusterError::Engine { source })?;
        Ok(Self { docker })
    }

    /// Run `cmd` in `container`; returns (exit code, stdout, stderr).
    pub async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
    ) -> Result<(i64, String, String), ClusterError> {
        let subject = format!("exec in {container}");
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| ClusterError::Docker {
                subject: subject.clone(),
                source,
            })?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|source| ClusterError::Docker {
                subject: subject.clone(),
                source,
            })?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|source| ClusterError::Docker {
                    subject: subject.clone(),
                    source,
                })? {
                    bollard::container::LogOutput::StdErr { message } => {
                        err.extend_from_slice(&message)
                    }
                    other => out.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        let code = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|source| ClusterError::Docker { subject, source })?
            .exit_code
            .unwrap_or(-1);
        Ok((
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "control-plane" => Some(Role::ControlPlane),
        "worker" => Some(Role::Worker),
        _ => None,
    }
}

/// Port bindings as kind created them, minus the API server's own loopback mapping.
fn ports_of(
    bindings: &HashMap<String, Option<Vec<bollard::models::PortBinding>>>,
) -> Vec<PortMapping> {
    let mut ports = Vec::new();
    for (key, binds) in bindings {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        let protocol = match proto {
            "udp" => PortProtocol::Udp,
            "sctp" => PortProtocol::Sctp,
            _ => PortProtocol::Tcp,
        };
        for b in binds.iter().flatten() {
            let host_ip = b.host_ip.clone().filter(|ip| !ip.is_empty());
            if container_port == 6443 && host_ip.as_deref() == Some("127.0.0.1") {
                continue;
            }
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            ports.push(PortMapping {
                container_port,
                host_port,
                protocol,
                listen_address: host_ip.filter(|ip| ip != "0.0.0.0"),
            });
        }
    }
    ports.sort();
    ports
}

impl NodeOps for ClusterEngine {
    async fn kind_nodes(&self) -> Result<BTreeMap<String, Vec<NodeContainer>>, ClusterError> {
        let filters = HashMap::from([("label", vec![CLUSTER_LABEL])]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|source| ClusterError::Docker {
                subject: "list kind nodes".into(),
                source,
            })?;
        let mut out: BTreeMap<String, Vec<NodeContainer>> = BTreeMap::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let (Some(cluster), Some(role)) = (
                labels.get(CLUSTER_LABEL),
                labels.get(ROLE_LABEL).and_then(|r| parse_role(r)),
            ) else {
                continue;
            };
            let Some(name) = c
                .names
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
            else {
                continue;
            };
            let info = match self
                .docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
            {
                Ok(i) => i,
                // Removed between list and inspect (e.g. `kind delete` running): not a node.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(source) => {
                    return Err(ClusterError::Docker {
                        subject: format!("inspect {name}"),
                        source,
                    })
                }
            };
            let image = info
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let ports = info
                .host_config
                .and_then(|h| h.port_bindings)
                .map(|b| ports_of(&b))
                .unwrap_or_default();
            out.entry(cluster.clone()).or_default().push(NodeContainer {
                container: name,
                node: ObservedNode { role, image, ports },
            });
        }
        for nodes in out.values_mut() {
            nodes.sort_by(|a, b| a.container.cmp(&b.container));
        }
        Ok(out)
    }

    async fn aliases(
        &self,
        network: &str,
        container: &str,
    ) -> Result<Option<Vec<String>>, ClusterError> {
        let info = match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            // Not there (yet): not attached; connecting it will say what is missing.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(source) => {
                return Err(ClusterError::Docker {
                    subject: format!("inspect {container}"),
                    source,
                })
            }
        };
        let nets = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        Ok(nets
            .get(network)
            .map(|e| e.aliases.clone().unwrap_or_default()))
    }

    async fn connect(
        &self,
        network: &str,
        container: &str,
        alias: &str,
    ) -> Result<(), ClusterError> {
        // Fails clearly when the network does not exist (no kind cluster created yet).
        self.docker
            .inspect_network(network, None::<InspectNetworkOptions>)
            .await
            .map_err(|source| ClusterError::Docker {
                subject: format!("network {network}"),
                source,
            })?;
        self.docker
            .connect_network(
                network,
                NetworkConnectRequest {
                    container: container.to_string(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![alias.to_string()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(|source| ClusterError::Docker {
                subject: format!("connect {container} to {network}"),
                source,
            })
    }

    async fn read_file(&self, container: &str, path: &str) -> Result<Option<String>, ClusterError> {
        let (code, out, _) = self
            .exec(container, vec!["cat".into(), path.into()])
            .await?;
        Ok((code == 0).then_some(out))
    }

    async fn write_file(
        &self,
        container: &str,
        path: &str,
        content: &str,
    ) -> Result<(), ClusterError> {
        // Content travels as an argument, never through shell quoting.
        let script = "mkdir -p \"$(dirname \"$1\")\" && printf '%s' \"$2\" > \"$1\"";
        let cmd = ["sh", "-c", script, "sh", path, content]
            .map(String::from)
            .to_vec();
        let (code, _, err) = self.exec(container, cmd).await?;
        if code != 0 {
            return Err(ClusterError::Exec {
                subject: format!("write {path} in {container}"),
                message: err.trim().to_string(),
            });
        }
        Ok(())
    }
}
