//! Target resolution: where a new connection for a forward goes *now*.
//!
//! Container targets are looked up on the engine and cached briefly, so a burst of short
//! connections costs one inspect, while a container recreated with a new IP is picked up
//! within the cache lifetime — immediately when a connect to the old IP fails, because the
//! forwarder then calls `invalidate` and retries once.
//!
//! A scaled service's target lists every replica: each connection starts at the next replica
//! in turn and goes to the first one running from there, so connections spread over the
//! running replicas and a stopped one is passed over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures::future::BoxFuture;
use futures::StreamExt;

use super::validate::TargetSpec;
use super::RoutingError;

/// Narrow seam between forwarders and the engine.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        target: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<SocketAddr, RoutingError>>;
    /// Forget any cached answer for `target` (a connect to it just failed).
    fn invalidate(&self, _target: &TargetSpec) {}
}

/// Resolves plain addresses with the system resolver; container targets fail (no engine).
#[derive(Debug, Default, Clone)]
pub struct StaticResolver;

impl Resolve for StaticResolver {
    fn resolve<'a>(
        &'a self,
        target: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<SocketAddr, RoutingError>> {
        Box::pin(async move {
            match target {
                TargetSpec::Address { host, port } => resolve_address(host, *port).await,
                TargetSpec::Container { .. } => Err(RoutingError::Resolve {
                    target: target.to_string(),
                    reason: "container targets need the Docker engine".into(),
                }),
            }
        })
    }
}

async fn resolve_address(host: &str, port: u16) -> Result<SocketAddr, RoutingError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| RoutingError::Resolve {
                target: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| RoutingError::Resolve {
        target: format!("{host}:{port}"),
        reason: "no address".into(),
    })
}

/// Container IPs from the Docker engine, cached for `ttl`.
pub struct DockerResolver {
    docker: Docker,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), (IpAddr, Instant)>>,
    /// Where the next connection to a scaled service starts looking.
    turn: std::sync::atomic::AtomicUsize,
}

impl DockerResolver {
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            ttl: Duration::from_secs(2),
            cache: Mutex::new(HashMap::new()),
            turn: Default::default(),
        }
    }

    pub async fn connect() -> Result<Self, RoutingError> {
        let docker = crate::engine::docker::client()
            .await
            .map_err(|source| RoutingError::Docker { source })?;
        Ok(Self::new(docker))
    }

    /// Clear the cache whenever a container starts, stops or changes networks, so a recreated
    /// target is looked up afresh on the next connection instead of after the TTL. The task
    /// ends when the engine's event stream does (the TTL still bounds staleness then).
    pub fn spawn_invalidation(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        let docker = self.docker.clone();
        tokio::spawn(async move {
            let filters = HashMap::from([
                (
                    "type".to_string(),
                    vec!["container".to_string(), "network".to_string()],
                ),
                (
                    "event".to_string(),
                    ["start", "die", "destroy", "rename", "connect", "disconnect"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]);
            let opts = bollard::query_parameters::EventsOptions {
                filters: Some(filters),
                ..Default::default()
            };
            let mut events = docker.events(Some(opts));
            while let Some(ev) = events.next().await {
                let Some(this) = this.upgrade() else { return };
                match ev {
                    Ok(ev) => {
                        tracing::debug!(
                            action = ev.action.as_deref().unwrap_or(""),
                            "docker event: target cache cleared"
                        );
                        this.cache.lock().expect("cache lock not poisoned").clear();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "docker event stream ended");
                        return;
                    }
                }
            }
        })
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The IP of the next running replica, starting one further at every call.
    async fn replica_ip(
        &self,
        containers: &[String],
        network: &str,
    ) -> Result<IpAddr, RoutingError> {
        use std::sync::atomic::Ordering;
        let start = match containers.len() {
            0 => {
                return Err(RoutingError::Resolve {
                    target: format!("on {network}"),
                    reason: "the service is scaled to 0".into(),
                })
            }
            1 => 0,
            n => self.turn.fetch_add(1, Ordering::Relaxed) % n,
        };
        let mut last = None;
        for c in containers.iter().cycle().skip(start).take(containers.len()) {
            match self.container_ip(c, network).await {
                Ok(ip) => return Ok(ip),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RoutingError::Resolve {
            target: format!("on {network}"),
            reason: "no replica".into(),
        }))
    }

    async fn container_ip(&self, container: &str, network: &str) -> Result<IpAddr, RoutingError> {
        let key = (container.to_string(), network.to_string());
        if let Some((ip, at)) = self
            .cache
            .lock()
            .expect("cache lock not poisoned")
            .get(&key)
        {
            if at.elapsed() < self.ttl {
                return Ok(*ip);
            }
        }
        let fail = |reason: String| RoutingError::Resolve {
            target: format!("{container} on {network}"),
            reason,
        };
        let info = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(fail("container is not running".into()));
        }
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|ep| ep.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| fail(format!("container has no IP on network {network}")))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| fail(format!("engine returned a bad IP {ip:?}")))?;
        self.cache
            .lock()
            .expect("cache lock not poisoned")
            .insert(key, (ip, Instant::now()));
        Ok(ip)
    }
}

impl Resolve for DockerResolver {
    fn resolve<'a>(
        &'a self,
        target: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<SocketAddr, RoutingError>> {
        Box::pin(async move {
            match target {
                TargetSpec::Address { host, port } => resolve_address(host, *port).await,
                TargetSpec::Container {
                    containers,
                    network,
                    port,
                } => Ok(SocketAddr::new(
                    self.replica_ip(containers, network).await?,
                    *port,
                )),
            }
        })
    }

    fn invalidate(&self, target: &TargetSpec) {
        if let TargetSpec::Container {
            containers,
            network,
            ..
        } = target
        {
            let mut cache = self.cache.lock().expect("cache lock not poisoned");
            for c in containers {
                cache.remove(&(c.clone(), network.clone()));
            }
        }
    }
}
