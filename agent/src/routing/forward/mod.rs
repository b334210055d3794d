//! The forwarder manager: one listener task per `(listen, protocol)`, reconfigured live.
//!
//! `apply` diffs the running set against the new specs and touches only what changed: a new
//! forward binds, a removed one stops (its listener and its connections), a changed target is
//! swapped in place so open connections keep flowing and new ones go to the new target.
//! Counters are prometheus-client metrics shared with `/status` (one source of truth).

mod tcp;
mod udp;

#[cfg(target_os = "linux")]
mod splice;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::resolve::Resolve;
use super::validate::{ForwardSpec, TargetSpec};
use super::{bind, RoutingError};
use crate::desired::catalog::Protocol;

type Labels = Vec<(String, String)>;

/// Metric families for all forwards.
#[derive(Clone, Default)]
struct Metrics {
    active: Family<Labels, Gauge>,
    total: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
}

/// Per-forward handles into the families (cloned counters share their atomics).
#[derive(Clone)]
pub(crate) struct Stats {
    pub active: Gauge,
    pub total: Counter,
    /// client → target
    pub bytes_up: Counter,
    /// target → client
    pub bytes_down: Counter,
    pub errors: Counter,
}

impl Metrics {
    fn stats(&self, spec: &ForwardSpec) -> Stats {
        let base = labels(spec);
        let with = |k: &str, v: &str| {
            let mut l = base.clone();
            l.push((k.to_string(), v.to_string()));
            l
        };
        // One statement per family: get_or_create returns a read guard, and holding it while
        // the same family inserts the next label set would deadlock.
        let active = self.active.get_or_create(&base).clone();
        let total = self.total.get_or_create(&base).clone();
        let bytes_up = self
            .bytes
            .get_or_create(&with("direction", "to_target"))
            .clone();
        let bytes_down = self
            .bytes
            .get_or_create(&with("direction", "from_target"))
            .clone();
        let errors = self.errors.get_or_create(&base).clone();
        Stats {
            active,
            total,
            bytes_up,
            bytes_down,
            errors,
        }
    }
}

fn labels(spec: &ForwardSpec) -> Labels {
    vec![
        ("forward".into(), spec.name.clone()),
        ("listen".into(), spec.listen.to_string()),
        ("protocol".into(), spec.protocol.to_string()),
    ]
}

/// State shared by a listener task and its connections.
pub(crate) struct Shared {
    pub target: RwLock<TargetSpec>,
    pub resolver: Arc<dyn Resolve>,
    pub stats: Stats,
    pub cancel: CancellationToken,
    pub udp_idle: Duration,
    pub use_splice: bool,
}

impl Shared {
    pub fn target(&self) -> TargetSpec {
        self.target
            .read()
            .expect("target lock not poisoned")
            .clone()
    }
}

struct Running {
    spec: ForwardSpec,
    shared: Arc<Shared>,
    /// The listener task; awaited after cancelling so its socket is closed before a
    /// forward on the same address is bound again (rename, remove + re-add).
    task: tokio::task::JoinHandle<()>,
}

type Key = (SocketAddr, Protocol);

#[derive(Debug, Default)]
pub struct ForwardReport {
    pub tried: usize,
    pub failed: usize,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub retargeted: Vec<String>,
    /// `RoutingError::Forward`, one per forward that did not start.
    pub errors: Vec<RoutingError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardStatus {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub target: String,
    /// `listening` or `failed`.
    pub state: &'static str,
    pub error: Option<String>,
    pub connections_active: i64,
    pub connections_total: u64,
    pub errors: u64,
    pub bytes_to_target: u64,
    pub bytes_from_target: u64,
}

#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// A UDP client flow is forgotten after this long without traffic either way.
    pub udp_idle: Duration,
    /// Use splice(2) for TCP on Linux (zero-copy through a pipe); buffered copy otherwise.
    pub splice: bool,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        Self {
            udp_idle: Duration::from_secs(60),
            splice: cfg!(target_os = "linux"),
        }
    }
}

pub struct Forwarder {
    resolver: Arc<dyn Resolve>,
    metrics: Metrics,
    options: ForwarderOptions,
    running: Mutex<BTreeMap<Key, Running>>,
    failed: Mutex<BTreeMap<Key, (ForwardSpec, String)>>,
}

impl Forwarder {
    pub fn new(resolver: Arc<dyn Resolve>, options: ForwarderOptions) -> Self {
        Self {
            resolver,
            metrics: Metrics::default(),
            options,
            running: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Register the forward metrics (`macula_forward_*`) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "macula_forward_connections_active",
            "Open connections (TCP) or client flows (UDP) per forward",
            m.active.clone(),
        );
        registry.register(
            "macula_forward_connections",
            "Connections (TCP) or client flows (UDP) accepted per forward",
            m.total.clone(),
        );
        registry.register(
            "macula_forward_bytes",
            "Bytes copied per forward and direction (to_target, from_target)",
            m.bytes.clone(),
        );
        registry.register(
            "macula_forward_errors",
            "Accept, resolve, connect and copy errors per forward",
            m.errors.clone(),
        );
    }

    /// Make the running forwards match `specs`, touching only those that changed.
    pub async fn apply(&self, specs: &[ForwardSpec]) -> ForwardReport {
        let desired: BTreeMap<Key, &ForwardSpec> =
            specs.iter().map(|s| ((s.listen, s.protocol), s)).collect();
        let mut report = ForwardReport::default();
        let mut running = self.running.lock().await;
        let mut failed = self.failed.lock().await;
        failed.retain(|k, _| desired.contains_key(k));

        let gone: Vec<Key> = running
            .iter()
            .filter(|(k, r)| desired.get(k).is_none_or(|s| s.name != r.spec.name))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(r) = running.remove(&k) {
                r.shared.cancel.cancel();
                let _ = r.task.await;
                tracing::info!(forward = %r.spec.name, listen = %r.spec.listen, protocol = %r.spec.protocol, "forward stopped");
                report.stopped.push(r.spec.name.clone());
            }
        }

        for (k, spec) in desired {
            if let Some(r) = running.get_mut(&k) {
                if r.spec.target != spec.target {
                    *r.shared.target.write().expect("target lock not poisoned") =
                        spec.target.clone();
                    tracing::info!(forward = %spec.name, target = %spec.target, "forward retargeted");
                    report.retargeted.push(spec.name.clone());
                    r.spec = spec.clone();
                }
                continue;
            }
            report.tried += 1;
            match self.start(spec).await {
                Ok(r) => {
                    failed.remove(&k);
                    tracing::info!(forward = %spec.name, listen = %spec.listen, protocol = %spec.protocol, target = %spec.target, "forward listening");
                    report.started.push(spec.name.clone());
                    running.insert(k, r);
                }
                Err(e) => {
                    tracing::warn!(forward = %spec.name, error = %e, "forward failed to start");
                    report.failed += 1;
                    failed.insert(k, (spec.clone(), e.to_string()));
                    report.errors.push(RoutingError::Forward {
                        name: spec.name.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
        report
    }

    async fn start(&self, spec: &ForwardSpec) -> Result<Running, RoutingError> {
        let shared = Arc::new(Shared {
            target: RwLock::new(spec.target.clone()),
            resolver: self.resolver.clone(),
            stats: self.metrics.stats(spec),
            cancel: CancellationToken::new(),
            udp_idle: self.options.udp_idle,
            use_splice: self.options.splice,
        });
        let task = match spec.protocol {
            Protocol::Tcp => {
                let listener = bind::tcp(spec.listen).await?;
                tokio::spawn(tcp::serve(listener, shared.clone()))
            }
            Protocol::Udp => {
                let socket = bind::udp(spec.listen).await?;
                tokio::spawn(udp::serve(socket, shared.clone()))
            }
        };
        Ok(Running {
            spec: spec.clone(),
            shared,
            task,
        })
    }

    /// Status of every desired forward, running or failed, in listen order.
    pub async fn stats(&self) -> Vec<ForwardStatus> {
        let running = self.running.lock().await;
        let failed = self.failed.lock().await;
        let mut out: BTreeMap<Key, ForwardStatus> = BTreeMap::new();
        for (k, r) in running.iter() {
            let s = &r.shared.stats;
            out.insert(
                *k,
                ForwardStatus {
                    name: r.spec.name.clone(),
                    listen: r.spec.listen,
                    protocol: r.spec.protocol,
                    target: r.shared.target().to_string(),
                    state: "listening",
                    error: None,
                    connections_active: s.active.get(),
                    connections_total: s.total.get(),
                    errors: s.errors.get(),
                    bytes_to_target: s.bytes_up.get(),
                    bytes_from_target: s.bytes_down.get(),
                },
            );
        }
        for (k, (spec, err)) in failed.iter() {
            out.insert(
                *k,
                ForwardStatus {
                    name: spec.name.clone(),
                    listen: spec.listen,
                    protocol: spec.protocol,
                    target: spec.target.to_string(),
                    state: "failed",
                    error: Some(err.clone()),
                    connections_active: 0,
                    connections_total: 0,
                    errors: 0,
                    bytes_to_target: 0,
                    bytes_from_target: 0,
                },
            );
        }
        out.into_values().collect()
    }

    /// Stop every listener and connection.
    pub async fn shutdown(&self) {
        for (_, r) in std::mem::take(&mut *self.running.lock().await) {
            r.shared.cancel.cancel();
            let _ = r.task.await;
        }
    }
}
