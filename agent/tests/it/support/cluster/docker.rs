//! Real-engine helpers for the cluster tests: a busybox image built locally (nothing can be
//! pulled), uniquely named resources, and a guard that removes them even when a test fails.

#![allow(dead_code)]

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

pub const TEST_LABEL: &str = "io.macula.gitops.test";

pub fn random_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("mgt{:x}{:x}", n & 0xffffff, std::process::id() & 0xfff)
}

pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Removes everything a test created, on drop (also when the test panics).
pub struct Guard {
    pub docker: Docker,
    pub id: String,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub images: Vec<String>,
}

impl Guard {
    pub async fn new() -> Self {
        Self {
            docker: docker().await,
            id: random_id(),
            containers: vec![],
            networks: vec![],
            images: vec![],
        }
    }

    /// A busybox image (FROM scratch + Debian's static busybox) tagged for this test.
    pub async fn busybox(&mut self) -> String {
        let tag = format!("{}-busybox:latest", self.id);
        let ctx = tempfile::tempdir().expect("temp dir");
        std::fs::copy("/bin/busybox", ctx.path().join("busybox"))
            .expect("busybox-static is installed");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .expect("write Dockerfile");
        let archive = macula_gitops::engine::pack_context(ctx.path()).expect("pack context");
        let labels = HashMap::from([(TEST_LABEL, self.id.as_str())]);
        let opts = BuildImageOptionsBuilder::default()
            .t(&tag)
            .rm(true)
            .labels(&labels)
            .build();
        let mut s = self
            .docker
            .build_image(opts, None, Some(bollard::body_full(archive.into())));
        while let Some(item) = s.next().await {
            let info = item.unwrap();
            assert!(info.error_detail.is_none(), "{:?}", info.error_detail);
        }
        self.images.push(tag.clone());
        tag
    }

    pub async fn network(&mut self, name: &str) -> String {
        let name = format!("{}-{name}", self.id);
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), self.id.clone())])),
                ..Default::default()
            })
            .await
            .unwrap();
        self.networks.push(name.clone());
        name
    }

    /// Start a container running `cmd`, optionally on `network`, with extra labels.
    pub async fn container(
        &mut self,
        name: &str,
        image: &str,
        cmd: &[&str],
        network: Option<&str>,
        labels: &[(&str, &str)],
    ) -> String {
        let name = format!("{}-{name}", self.id);
        let mut l: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(TEST_LABEL.into(), self.id.clone());
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(l),
            host_config: network.map(|n| HostConfig {
                network_mode: Some(n.into()),
                ..Default::default()
            }),
            networking_config: network.map(|n| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    n.to_string(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .unwrap();
        self.containers.push(name.clone());
        self.docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        name
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let (containers, networks, images) = (
            std::mem::take(&mut self.containers),
            std::mem::take(&mut self.networks),
            std::mem::take(&mut self.images),
        );
        // Drop runs inside the test's runtime; clean up on a separate thread with its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for c in containers {
                    let _ = docker
                        .remove_container(
                            &c,
                            Some(
                                RemoveContainerOptionsBuilder::default()
                                    .force(true)
                                    .v(true)
                                    .build(),
                            ),
                        )
                        .await;
                }
                for n in networks {
                    let _ = docker.remove_network(&n).await;
                }
                for i in images.iter().rev() {
                    let _ = docker
                        .remove_image(
                            i,
                            Some(RemoveImageOptionsBuilder::default().force(true).build()),
                            None,
                        )
                        .await;
                }
            });
        })
        .join()
        .ok();
    }
}
