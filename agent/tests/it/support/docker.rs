//! The engine side of a test: [`Cleanup`] removes what the test created (also when it panics),
//! [`Sandbox`] gives async tests a bollard client and creates networks and containers that
//! `Cleanup` tracks, and [`docker`] runs the CLI for assertions.

use std::collections::HashMap;
use std::process::Command;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use bollard::Docker;

/// Label on everything a [`Sandbox`] creates; its value is the sandbox's id.
pub const TEST_LABEL: &str = "io.macula.gitops.test";

/// Run the docker CLI, returning trimmed stdout ("" on failure).
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Run Debian's docker-compose 1.29 as project `project` on `file`; it must succeed. Returns
/// (stdout, stderr): compose reports what it creates on stderr.
pub fn docker_compose(project: &str, file: &std::path::Path, args: &[&str]) -> (String, String) {
    let o = Command::new("docker-compose")
        .args(["-p", project, "-f"])
        .arg(file)
        .args(args)
        .output()
        .expect("docker-compose runs");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "docker-compose {args:?}: {err}");
    (String::from_utf8_lossy(&o.stdout).into_owned(), err)
}

pub fn container_id(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", name])
}

pub fn container_state(name: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Status}}", name])
}

/// The value of environment variable `var` in container `name` ("" when unset or gone).
pub fn env_var(name: &str, var: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        name,
    ])
    .lines()
    .find_map(|l| l.strip_prefix(&format!("{var}=")).map(str::to_string))
    .unwrap_or_default()
}

/// What a test created on the engine, removed on drop: everything carrying one of `labels`
/// (containers, networks, volumes; e.g. the agent's host label), then the named containers,
/// networks and images. Synchronous (docker CLI), so it works from any test, async or not.
#[derive(Default)]
pub struct Cleanup {
    labels: Vec<String>,
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    /// Remove everything labelled `key=value`.
    pub fn label(&mut self, key: &str, value: &str) {
        let l = format!("{key}={value}");
        if !self.labels.contains(&l) {
            self.labels.push(l);
        }
    }

    pub fn container(&mut self, name: &str) {
        self.containers.push(name.into());
    }

    pub fn network(&mut self, name: &str) {
        self.networks.push(name.into());
    }

    pub fn image(&mut self, tag: &str) {
        self.images.push(tag.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let rm = |args: &[&str], ids: Vec<String>| {
            if !ids.is_empty() {
                let _ = Command::new("docker").args(args).args(&ids).output();
            }
        };
        let list = |args: &[&str], label: &str| -> Vec<String> {
            let filter = format!("label={label}");
            docker(&[args, &["--filter", &filter]].concat())
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        for l in &self.labels {
            rm(&["rm", "-f", "-v"], list(&["ps", "-aq"], l));
            rm(&["network", "rm"], list(&["network", "ls", "-q"], l));
            rm(&["volume", "rm", "-f"], list(&["volume", "ls", "-q"], l));
        }
        rm(&["rm", "-f", "-v"], std::mem::take(&mut self.containers));
        rm(&["network", "rm"], std::mem::take(&mut self.networks));
        rm(&["rmi", "-f"], std::mem::take(&mut self.images));
    }
}

/// A bollard client connected to the local engine.
pub async fn client() -> Docker {
    Docker::connect_with_defaults()
        .expect("docker socket")
        .negotiate_version()
        .await
        .expect("docker engine answers")
}

/// A test's own corner of the engine: a unique id to prefix names with, a bollard client, and
/// the [`Cleanup`] for everything created through it (labelled [`TEST_LABEL`]=id).
pub struct Sandbox {
    pub docker: Docker,
    pub id: String,
    pub cleanup: Cleanup,
}

impl Sandbox {
    pub async fn new() -> Self {
        let id = super::unique_id();
        let mut cleanup = Cleanup::default();
        cleanup.label(TEST_LABEL, &id);
        Self {
            docker: client().await,
            id,
            cleanup,
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(TEST_LABEL.into(), self.id.clone());
        l
    }

    /// Create the network `<id>-<name>`.
    pub async fn network(&mut self, name: &str) -> String {
        self.create_network(name, None)
            .await
            .unwrap_or_else(|(name, e)| panic!("create network {name}: {e}"))
    }

    /// Create the network `<id>-<name>` on a free /24 in 172.31.100-249.0/24, for tests that
    /// give containers fixed addresses. Returns the name and the prefix (`172.31.N`).
    pub async fn subnet_network(&mut self, name: &str) -> (String, String) {
        let seed = u32::from_str_radix(&self.id, 16).expect("hex id") as usize;
        for i in 0..20 {
            let prefix = format!("172.31.{}", 100 + (seed + i * 7) % 150);
            let ipam = Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{prefix}.0/24")),
                    ..Default::default()
                }]),
                ..Default::default()
            };
            if let Ok(name) = self.create_network(name, Some(ipam)).await {
                return (name, prefix);
            }
        }
        panic!("no free test subnet in 172.31.100-249.0/24");
    }

    async fn create_network(
        &mut self,
        name: &str,
        ipam: Option<Ipam>,
    ) -> Result<String, (String, bollard::errors::Error)> {
        let name = format!("{}-{name}", self.id);
        let req = NetworkCreateRequest {
            name: name.clone(),
            labels: Some(self.labels(&[])),
            ipam,
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {
                self.cleanup.network(&name);
                Ok(name)
            }
            Err(e) => Err((name, e)),
        }
    }

    /// Create and start `<id>-<name>` running `cmd`, optionally on `network`, with extra labels.
    pub async fn container(
        &mut self,
        name: &str,
        image: &str,
        cmd: &[&str],
        network: Option<&str>,
        labels: &[(&str, &str)],
    ) -> String {
        let endpoint = network.map(|n| (n, EndpointSettings::default()));
        self.create_container(name, image, cmd, endpoint, labels)
            .await
    }

    /// Create and start `<id>-<name>` running `cmd` on `network` at the fixed address `ip`.
    pub async fn container_at(
        &mut self,
        name: &str,
        image: &str,
        cmd: &[&str],
        network: &str,
        ip: &str,
    ) -> String {
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(ip.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_container(name, image, cmd, Some((network, endpoint)), &[])
            .await
    }

    async fn create_container(
        &mut self,
        name: &str,
        image: &str,
        cmd: &[&str],
        network: Option<(&str, EndpointSettings)>,
        labels: &[(&str, &str)],
    ) -> String {
        let name = format!("{}-{name}", self.id);
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(self.labels(labels)),
            host_config: network.as_ref().map(|(n, _)| HostConfig {
                network_mode: Some(n.to_string()),
                ..Default::default()
            }),
            networking_config: network.map(|(n, e)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(n.to_string(), e)])),
            }),
            ..Default::default()
        };
        self.cleanup.container(&name);
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .unwrap_or_else(|e| panic!("create container {name}: {e}"));
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap_or_else(|e| panic!("start container {name}: {e}"));
        name
    }
}
