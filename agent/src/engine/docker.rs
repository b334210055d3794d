//! `Engine` over the Docker API with bollard, at `DOCKER_HOST` or the default socket.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard::errors::Error as BErr;
use bollard::models::{
    ContainerSummaryStateEnum, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptions, ListVolumesOptions, RemoveContainerOptionsBuilder,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;

use super::render::{connect_order, container_body, endpoint};
use super::{Changes, ContainerStatus, CreateContext, Engine, EngineError};
use crate::desired::spec::{
    BuildSpec, HookSpec, NetworkSpec, ServiceSpec, VolumeSpec, INLINE_DOCKERFILE,
};
use crate::labels;
use crate::plan::{Observed, ObservedContainer, ObservedImage, ObservedNetwork, ObservedVolume};

#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
}

fn endpoint_name() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn api(op: &'static str, subject: impl Into<String>) -> impl FnOnce(BErr) -> EngineError {
    let subject = subject.into();
    move |source| EngineError::Api {
        op,
        subject,
        source,
    }
}

/// A bollard client at `DOCKER_HOST` or the default socket, on an agreed API version
/// (engines as old as 20.10 speak 1.41 at most). Every part of the agent connects through here.
///
/// The first request is bounded by [`ANSWER_WITHIN`]: a socket that accepts and never answers
/// (a hung engine, a stuck proxy) fails the pass in seconds instead of after bollard's 120 s.
pub async fn client() -> Result<Docker, BErr> {
    let docker = Docker::connect_with_defaults()?;
    match tokio::time::timeout(ANSWER_WITHIN, docker.negotiate_version()).await {
        Ok(r) => r,
        Err(_) => Err(BErr::RequestTimeoutError),
    }
}

/// How long the engine may take to answer its first request (`/version`).
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

impl DockerEngine {
    pub async fn connect() -> Result<Self, EngineError> {
        let docker = client().await.map_err(|source| EngineError::Unreachable {
            endpoint: endpoint_name(),
            source,
        })?;
        Ok(Self { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

/// Docker's `/name` → `name`.
fn trim_name(n: &str) -> String {
    n.trim_start_matches('/').to_string()
}

/// `repo` → `repo:latest`, as the engine lists tags.
pub fn normalize_ref(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Exit code from a status such as `Exited (137) 3 seconds ago`: old engines send no field.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

fn health_from_status(status: &str) -> Option<String> {
    ["(healthy)", "(unhealthy)", "(health: starting)"]
        .iter()
        .find(|m| status.contains(*m))
        .map(|m| {
            m.trim_matches(['(', ')'])
                .trim_start_matches("health: ")
                .to_string()
        })
}

impl Engine for DockerEngine {
    async fn observe(&self) -> Result<Observed, EngineError> {
        let (containers, networks, volumes, images) = tokio::join!(
            self.docker.list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build()
            )),
            self.docker.list_networks(None::<ListNetworksOptions>),
            self.docker.list_volumes(None::<ListVolumesOptions>),
            self.docker
                .list_images(Some(ListImagesOptionsBuilder::default().build())),
        );
        let mut o = Observed::default();
        for c in containers.map_err(api("list", "containers"))? {
            let status = c.status.clone().unwrap_or_default();
            o.containers.push(ObservedContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| trim_name(n))
                    .unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                exit_code: matches!(c.state, Some(ContainerSummaryStateEnum::EXITED))
                    .then(|| exit_code_from_status(&status))
                    .flatten(),
                health: health_from_status(&status),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                mounts: c
                    .mounts
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| m.typ.as_deref() == Some("volume"))
                    .filter_map(|m| {
                        Some(crate::plan::ObservedMount {
                            volume: m.name?,
                            target: m.destination?,
                        })
                    })
                    .collect(),
            });
        }
        for n in networks.map_err(api("list", "networks"))? {
            let subnet = n
                .ipam
                .as_ref()
                .and_then(|i| i.config.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.subnet.as_ref())
                .and_then(|s| s.parse().ok());
            o.networks.insert(
                n.name.unwrap_or_default(),
                ObservedNetwork {
                    id: n.id.unwrap_or_default(),
                    subnet,
                    labels: n.labels.unwrap_or_default().into_iter().collect(),
                },
            );
        }
        for v in volumes
            .map_err(api("list", "volumes"))?
            .volumes
            .unwrap_or_default()
        {
            o.volumes.insert(
                v.name,
                ObservedVolume {
                    labels: v.labels.into_iter().collect(),
                },
            );
        }
        for i in images.map_err(api("list", "images"))? {
            let digest = i.labels.get(labels::CONTEXT_DIGEST).cloned();
            for tag in &i.repo_tags {
                o.images.insert(
                    tag.clone(),
                    ObservedImage {
                        context_digest: digest.clone(),
                    },
                );
            }
        }
        // The planner looks images up as written in the desired state (`busybox` = `busybox:latest`).
        let aliases: Vec<(String, ObservedImage)> = o
            .images
            .iter()
            .filter_map(|(k, v)| {
                k.strip_suffix(":latest")
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect();
        o.images.extend(aliases);
        Ok(o)
    }

    async fn create_network(&self, spec: &NetworkSpec, host: &str) -> Result<(), EngineError> {
        let mut l: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        l.extend(labels::compose_resource(
            labels::COMPOSE_NETWORK,
            &spec.project,
            &spec.key,
        ));
        l.extend(labels::ownership(host, &spec.stack));
        let o = &spec.options;
        let configs: Vec<IpamConfig> = if o.ipam_config.is_empty() {
            spec.subnet
                .map(|s| IpamConfig {
                    subnet: Some(s.to_string()),
                    gateway: spec.gateway.map(|g| g.to_string()),
                    ..Default::default()
                })
                .into_iter()
                .collect()
        } else {
            o.ipam_config
                .iter()
                .map(|c| IpamConfig {
                    subnet: c.subnet.clone(),
                    ip_range: c.ip_range.clone(),
                    gateway: c.gateway.clone(),
                    auxiliary_addresses: (!c.aux_addresses.is_empty())
                        .then(|| c.aux_addresses.clone().into_iter().collect()),
                })
                .collect()
        };
        let ipam = (!configs.is_empty() || o.ipam_driver.is_some() || !o.ipam_options.is_empty())
            .then(|| Ipam {
                driver: o.ipam_driver.clone(),
                config: (!configs.is_empty()).then_some(configs),
                options: (!o.ipam_options.is_empty())
                    .then(|| o.ipam_options.clone().into_iter().collect()),
            });
        let mut options: HashMap<String, String> = o.driver_opts.clone().into_iter().collect();
        // The engine takes these two as options in the API versions engines here speak.
        if let Some(v6) = o.enable_ipv6 {
            options.insert("com.docker.network.enable_ipv6".into(), v6.to_string());
        }
        if let Some(v4) = o.enable_ipv4 {
            options.insert("com.docker.network.enable_ipv4".into(), v4.to_string());
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: spec.name.clone(),
                driver: Some(spec.driver.clone()),
                ipam,
                labels: Some(l),
                internal: o.internal.then_some(true),
                attachable: o.attachable.then_some(true),
                options: (!options.is_empty()).then_some(options),
                ..Default::default()
            })
            .await
            .map_err(api("create network", &spec.name))?;
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        // The engine releases a removed container's endpoint a moment after `rm -f` returns
        // (seen on 20.10 under load), so a network pruned in the same pass can still report
        // active endpoints: wait briefly for them to go, never longer than ~2 s.
        let mut attempt = 0;
        loop {
            match self.docker.remove_network(name).await {
                Err(BErr::DockerResponseServerError {
                    status_code: 403 | 409,
                    message,
                }) if message.contains("active endpoints") && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                result => return result.map_err(api("remove network", name)),
            }
        }
    }

    async fn create_volume(&self, spec: &VolumeSpec, host: &str) -> Result<(), EngineError> {
        let mut l: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        l.extend(labels::compose_resource(
            labels::COMPOSE_VOLUME,
            &spec.project,
            &spec.key,
        ));
        l.extend(labels::ownership(host, &spec.stack));
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(spec.name.clone()),
                labels: Some(l),
                driver: spec.driver.clone(),
                driver_opts: (!spec.driver_opts.is_empty())
                    .then(|| spec.driver_opts.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(api("create volume", &spec.name))?;
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            // Already gone (e.g. with its container): what was asked for holds.
            Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            r => r.map_err(api("remove volume", name)),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<(), EngineError> {
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&normalize_ref(image))
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        let registry = registry_of(image);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        return Err(EngineError::Pull {
                            image: image.into(),
                            registry,
                            message: e,
                        });
                    }
                    if let Some(status) = info.status {
                        tracing::info!(image, status = %status, progress = ?info.progress_detail.and_then(|p| p.current.zip(p.total)), "pull");
                    }
                }
                Err(e) => {
                    return Err(EngineError::Pull {
                        image: image.into(),
                        registry,
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    async fn build_image(&self, build: &BuildSpec, image: &str) -> Result<(), EngineError> {
        let fail = |message: String| EngineError::Build {
            image: image.into(),
            message,
        };
        let context = build.context.clone();
        let inline = build.options.dockerfile_inline.clone();
        let tarball = tokio::task::spawn_blocking(move || {
            let extra: Vec<(&str, &[u8])> = inline
                .as_deref()
                .map(|d| (INLINE_DOCKERFILE, d.as_bytes()))
                .into_iter()
                .collect();
            super::pack_context_with(&context, &extra)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("cannot pack build context: {e}")))?;
        let o = &build.options;
        let mut l: HashMap<String, String> = o.labels.clone().into_iter().collect();
        l.insert(
            labels::CONTEXT_DIGEST.to_string(),
            build.context_digest.clone(),
        );
        let args: HashMap<String, String> = build.args.clone().into_iter().collect();
        let mut opts = BuildImageOptionsBuilder::default()
            .dockerfile(&build.dockerfile)
            .t(image)
            .rm(true)
            .labels(&l)
            .buildargs(&args)
            .nocache(o.no_cache);
        if o.pull {
            opts = opts.pull("1");
        }
        if let Some(t) = &o.target {
            opts = opts.target(t);
        }
        if let Some(n) = &o.network {
            opts = opts.networkmode(n);
        }
        if let Some(s) = o.shm_size {
            opts = opts.shmsize(i32::try_from(s).unwrap_or(i32::MAX));
        }
        if !o.extra_hosts.is_empty() {
            opts = opts.extrahosts(&o.extra_hosts.join(","));
        }
        if !o.cache_from.is_empty() {
            opts = opts.cachefrom(&o.cache_from);
        }
        if let Some(p) = &o.platform {
            opts = opts.platform(p);
        }
        let opts = opts.build();
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_full(tarball.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| fail(e.to_string()))?;
            if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                return Err(fail(msg));
            }
            if let Some(line) = info
                .stream
                .as_deref()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
            {
                tracing::info!(image, "{line}");
            }
        }
        Ok(())
    }

    async fn create_container(
        &self,
        spec: &ServiceSpec,
        ctx: &CreateContext,
    ) -> Result<String, EngineError> {
        let body = container_body(spec, ctx);
        let name = ctx.name.as_deref().unwrap_or(&spec.container_name);
        let mut opts = CreateContainerOptionsBuilder::default().name(name);
        if let Some(p) = &spec.runtime.platform {
            opts = opts.platform(p);
        }
        let opts = opts.build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| match e {
                BErr::DockerResponseServerError {
                    status_code: 409, ..
                } => EngineError::NameInUse {
                    container: name.to_string(),
                },
                e => api("create container", name)(e),
            })?;
        // Remaining networks are connected before start, so the container starts fully wired.
        for (net, att) in connect_order(spec).into_iter().skip(1) {
            let req = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint(spec, att)),
            };
            if let Err(e) = self.docker.connect_network(net, req).await {
                // Never leave a half-wired container behind: it would look converged.
                let _ = self.remove_container(&created.id).await;
                return Err(api("connect network", format!("{net} for {name}"))(e));
            }
        }
        Ok(created.id)
    }

    async fn run_hook(
        &self,
        id: &str,
        name: &str,
        hook: &str,
        spec: &HookSpec,
    ) -> Result<(), EngineError> {
        let fail = |e: BErr| EngineError::Container {
            container: name.into(),
            message: format!("{hook} hook: {e}"),
        };
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(spec.command.clone()),
            user: spec.user.clone(),
            privileged: Some(spec.privileged),
            working_dir: spec.working_dir.clone(),
            env: Some(spec.environment.clone()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, config).await.map_err(fail)?;
        // Attached, so this returns once the hook's output ends, i.e. when it exits.
        let mut text = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec.id, None).await.map_err(fail)?
        {
            while let Some(chunk) = output.next().await {
                text.extend_from_slice(&chunk.map_err(fail)?.into_bytes());
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(fail)?
            .exit_code
            .unwrap_or(-1);
        if code == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&text);
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        Err(EngineError::Hook {
            container: name.into(),
            hook: hook.into(),
            code,
            output: last.map(|l| format!(": {}", l.trim())).unwrap_or_default(),
        })
    }

    async fn start_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| match &e {
                BErr::DockerResponseServerError { message, .. }
                    if message.contains("port is already allocated")
                        || message.contains("address already in use") =>
                {
                    EngineError::PortAllocated {
                        container: name.into(),
                        port: port_in(message),
                    }
                }
                BErr::DockerResponseServerError { message, .. }
                    if message.contains("marked for removal") =>
                {
                    EngineError::BeingRemoved {
                        container: name.into(),
                    }
                }
                // Removed since the pass looked (a `docker rm -f` that has just ended).
                BErr::DockerResponseServerError {
                    status_code: 404, ..
                } => EngineError::NoSuchContainer {
                    container: name.into(),
                },
                _ => api("start container", name)(e),
            })
    }

    async fn restart_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .restart_container(id, None::<RestartContainerOptions>)
            .await
            .map_err(api("restart container", id))
    }

    async fn rename_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RenameContainerOptionsBuilder::default()
            .name(name)
            .build();
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(api("rename container", format!("{id} to {name}")))
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.remove_container_with(id, false).await
    }

    async fn remove_container_and_volumes(&self, id: &str) -> Result<(), EngineError> {
        self.remove_container_with(id, true).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        self.status_of(id).await
    }

    fn container_changes(&self, id: &str, since: SystemTime) -> Changes {
        // Only what can change a waiter's answer: not the exec_* events every health check
        // makes. `health_status` matches all its forms (": healthy", ": unhealthy", ...).
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.to_string()]),
            (
                "event".to_string(),
                ["start", "die", "destroy", "health_status"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        // A second's margin: the engine compares whole nanoseconds of its own clock.
        let since = since
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(since)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let opts = EventsOptionsBuilder::default()
            .since(&format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
            .filters(&filters)
            .build();
        let id = id.to_string();
        self.docker
            .events(Some(opts))
            .map(move |e| e.map(|_| ()).map_err(api("watch container", id.clone())))
            .boxed()
    }
}

impl DockerEngine {
    /// `volumes`: also remove the container's anonymous volumes (named ones always stay).
    ///
    /// A running container is stopped first, as docker compose stops it: its `stop_signal`,
    /// then SIGKILL only after its `stop_grace_period` (the container's own StopSignal and
    /// StopTimeout, default SIGTERM and 10 s). A forced removal alone would SIGKILL it at once:
    /// a database would lose what it had not flushed. The forced removal then only cleans up.
    async fn remove_container_with(&self, id: &str, volumes: bool) -> Result<(), EngineError> {
        match self
            .docker
            .stop_container(id, None::<StopContainerOptions>)
            .await
        {
            // 304: not running; 404: gone; anything else (a removal already under way):
            // the removal below says what it is.
            Ok(()) => {}
            Err(e) => tracing::debug!(container = id, error = %e, "stop before removal"),
        }
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(volumes)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // "removal of container … is already in progress": someone's `docker rm -f`.
            Err(BErr::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Err(EngineError::BeingRemoved {
                container: id.to_string(),
            }),
            Err(e) => Err(api("remove container", id)(e)),
        }
    }

    async fn status_of(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| match e {
                BErr::DockerResponseServerError {
                    status_code: 404, ..
                } => EngineError::NoSuchContainer {
                    container: id.to_string(),
                },
                e => api("inspect container", id)(e),
            })?;
        let state = c.state.unwrap_or_default();
        Ok(ContainerStatus {
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            health: state.health.and_then(|h| h.status).map(|s| s.to_string()),
            exit_code: state.exit_code,
        })
    }
}

/// The registry an image reference pulls from, for error messages.
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Pull `0.0.0.0:8080` or similar out of the engine's message, for the error.
fn port_in(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ')', ':']))
        .find(|w| {
            w.contains(':')
                && w.rsplit(':')
                    .next()
                    .is_some_and(|p| p.parse::<u16>().is_ok())
        })
        .map(str::to_string)
        .unwrap_or_else(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing() {
        assert_eq!(
            exit_code_from_status("Exited (137) 3 seconds ago"),
            Some(137)
        );
        assert_eq!(
            health_from_status("Up 2 minutes (unhealthy)").as_deref(),
            Some("unhealthy")
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)").as_deref(),
            Some("starting")
        );
        assert_eq!(health_from_status("Up 2 minutes"), None);
        assert_eq!(normalize_ref("busybox"), "busybox:latest");
        assert_eq!(
            normalize_ref("localhost:5001/app"),
            "localhost:5001/app:latest"
        );
        assert_eq!(registry_of("localhost:5001/app"), "localhost:5001");
        assert_eq!(registry_of("prom/prometheus:v2"), "docker.io");
        assert_eq!(
            port_in("driver failed ...: Bind for 127.0.0.1:8080 failed: port is already allocated"),
            "127.0.0.1:8080"
        );
        assert_eq!(
            port_in("userland proxy: listen tcp4 127.0.0.1:40000: bind: address already in use"),
            "127.0.0.1:40000"
        );
    }
}
