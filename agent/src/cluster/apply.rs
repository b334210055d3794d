//! Observe and apply: turn `clusters.yaml` plus the host selection into `Desired`, look at the
//! engine and the clusters, run the plan's steps. Everything that can fail without touching
//! the host (install.yaml fetch and checksum, credentials) happens before the first step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::docker::{NodeContainer, NodeOps};
use super::file::{FluxSource, OciTarget};
use super::flux;
use super::host_services;
use super::kind::KindCli;
use super::kube_ops::{FluxBootstrap, InstallMark, KubeCluster};
use super::oci::{self, Provenance};
use super::plan::{
    plan, ClusterStep, ClustersObserved, Desired, ObservedCluster, RegistryObserved,
};
use super::registry::Wiring;
use super::release;
use super::secrets::DesiredSecret;
use super::{kindconfig, ClusterError};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Kind configs and the install.yaml cache live under here.
    pub state_dir: PathBuf,
    /// The nodes' Docker network (kind's default `kind`).
    pub kind_network: String,
    /// `kind create cluster --wait`.
    pub create_wait: Duration,
    /// Flux CRDs Established and controllers Available within this.
    pub flux_timeout: Duration,
    /// Deadline of each download (Flux's install.yaml and its checksums file) and of each
    /// request to the local registry (oci sources).
    pub fetch_timeout: Duration,
    /// What an oci source's artifact says it was built from (the applied revision).
    pub provenance: Provenance,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/macula-gitops"),
            kind_network: std::env::var("KIND_EXPERIMENTAL_DOCKER_NETWORK")
                .unwrap_or_else(|_| "kind".into()),
            create_wait: Duration::from_secs(300),
            flux_timeout: Duration::from_secs(300),
            fetch_timeout: super::release::DEFAULT_TIMEOUT,
            provenance: Provenance::default(),
        }
    }
}

/// What one pass did. `notices` are reports that changed nothing (needs recreate, unmanaged).
#[derive(Debug, Default)]
pub struct ClusterReport {
    pub tried: usize,
    pub failed: usize,
    pub changed: usize,
    /// The steps that ran, in order.
    pub done: Vec<ClusterStep>,
    pub notices: Vec<String>,
    /// One per failed cluster: `Prepare` or `Step`, each naming its cluster.
    pub errors: Vec<ClusterError>,
}

/// Clients of the clusters reached so far in this pass.
pub struct Session<'a, K: KindCli, N: NodeOps> {
    pub kind: &'a K,
    pub engine: &'a N,
    pub opts: &'a ApplyOptions,
    clients: HashMap<String, KubeCluster>,
    nodes: BTreeMap<String, Vec<NodeContainer>>,
}

impl<'a, K: KindCli, N: NodeOps> Session<'a, K, N> {
    pub fn new(kind: &'a K, engine: &'a N, opts: &'a ApplyOptions) -> Self {
        Self {
            kind,
            engine,
            opts,
            clients: HashMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    async fn refresh_nodes(&mut self) -> Result<(), ClusterError> {
        self.nodes = self.engine.kind_nodes().await?;
        Ok(())
    }

    async fn client(&mut self, cluster: &str) -> Result<&KubeCluster, ClusterError> {
        if !self.clients.contains_key(cluster) {
            let text = self.kind.kubeconfig(cluster).await?;
            let c = KubeCluster::from_kubeconfig(cluster, &text).await?;
            self.clients.insert(cluster.to_string(), c);
        }
        Ok(self.clients.get(cluster).expect("inserted above"))
    }

    /// Every kind cluster on the engine, with registry and Flux state for the desired ones.
    /// Problems reaching a cluster leave its Flux state unknown (so the plan re-applies) and
    /// are returned as warnings.
    pub async fn observe(
        &mut self,
        desired: &Desired,
        wiring: Option<&Wiring>,
    ) -> Result<(ClustersObserved, Vec<String>), ClusterError> {
        self.refresh_nodes().await?;
        let mut warnings = Vec::new();
        let mut observed = ClustersObserved::default();
        let nodes = self.nodes.clone();
        for (name, nodes) in &nodes {
            let mut o = ObservedCluster {
                nodes: nodes.iter().map(|n| n.node.clone()).collect(),
                ..Default::default()
            };
            if let Some(c) = desired.clusters.iter().find(|c| &c.name == name) {
                match host_services::observe(
                    self.engine,
                    &self.opts.kind_network,
                    &desired.host_services,
                )
                .await
                {
                    Ok(a) => o.host_services = a,
                    Err(e) => {
                        warnings.push(format!("cluster {name}: cannot observe host services: {e}"))
                    }
                }
                if let Some(w) = wiring {
                    // A stopped node or a missing registry container: not wired; the wiring
                    // step then reports the actual problem.
                    let (network, hosts_toml) =
                        w.observe(self.engine, nodes).await.unwrap_or_else(|e| {
                            warnings.push(format!(
                                "cluster {name}: cannot observe registry wiring: {e}"
                            ));
                            (false, false)
                        });
                    o.registry = RegistryObserved {
                        network,
                        hosts_toml,
                        configmap: false,
                    };
                }
                match self.observe_kube(name, wiring, &c.secrets).await {
                    Ok((flux, cm, secrets)) => {
                        o.flux = Some(flux);
                        o.registry.configmap = cm;
                        o.secrets_in_sync = secrets;
                    }
                    Err(e) => warnings.push(format!(
                        "cluster {name}: cannot observe the API server: {e}"
                    )),
                }
            }
            observed.clusters.insert(name.clone(), o);
        }
        for c in &desired.clusters {
            let FluxSource::Oci(t) = &c.flux.source else {
                continue;
            };
            let have = match self.artifact_digest(t).await {
                Ok(d) => d,
                Err(e) => {
                    warnings.push(format!("cluster {}: cannot read its artifact: {e}", c.name));
                    None
                }
            };
            observed.artifacts.insert(c.name.clone(), have);
        }
        Ok((observed, warnings))
    }

    /// The content layer the moving tag holds now.
    async fn artifact_digest(&self, t: &OciTarget) -> Result<Option<String>, oci::OciError> {
        oci::Registry::new(&t.push_host, self.opts.fetch_timeout)?
            .layer_digest(&t.repository, &t.tag)
            .await
    }

    async fn observe_kube(
        &mut self,
        name: &str,
        wiring: Option<&Wiring>,
        secrets: &[DesiredSecret],
    ) -> Result<(super::plan::FluxObserved, bool, BTreeSet<String>), ClusterError> {
        let c = self.client(name).await?;
        let flux = c.observe_flux().await?;
        let cm = match wiring {
            Some(w) => c.configmap_matches(&w.configmap()).await?,
            None => true,
        };
        let mut in_sync = BTreeSet::new();
        for s in secrets {
            let have = c.get("v1", "Secret", Some(&s.namespace), &s.name).await?;
            if s.matches(have.as_ref()) {
                in_sync.insert(s.id());
            }
        }
        Ok((flux, cm, in_sync))
    }
}

/// Everything fetched and rendered before the first change.
struct Prepared {
    manifests: HashMap<String, (Vec<Value>, release::Installed)>,
    sync: HashMap<String, Vec<Value>>,
}

async fn prepare(
    steps: &[ClusterStep],
    desired: &Desired,
    opts: &ApplyOptions,
) -> (Prepared, BTreeMap<String, ClusterError>) {
    let mut p = Prepared {
        manifests: HashMap::new(),
        sync: HashMap::new(),
    };
    let mut failed = BTreeMap::new();
    for step in steps {
        let Some(c) = desired.clusters.iter().find(|c| c.name == step.cluster()) else {
            continue;
        };
        match step {
            ClusterStep::InstallFlux { .. } => {
                let rel = release::Release::of(&c.flux);
                let r = release::fetch_verified(&rel, &opts.state_dir, opts.fetch_timeout)
                    .await
                    .and_then(|v| {
                        let objects = flux::parse_manifests(&rel.install_url, &v.text)?;
                        let inventory = objects.iter().map(release::ObjectRef::of).collect();
                        Ok((
                            objects,
                            release::Installed {
                                version: rel.version.clone(),
                                sha256: v.sha256,
                                verified_by: v.by,
                                install_url: rel.install_url.clone(),
                                inventory,
                            },
                        ))
                    });
                match r {
                    Ok(m) => {
                        p.manifests.insert(c.name.clone(), m);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let cluster = c.name.clone();
                        failed.insert(c.name.clone(), ClusterError::Prepare { cluster, message });
                    }
                }
            }
            ClusterStep::SyncFlux { .. } => {
                p.sync.insert(c.name.clone(), flux::sync_objects(&c.flux));
            }
            ClusterStep::Secrets { .. } => {
                if let Some(s) = c.secrets.iter().find(|s| s.values.is_none()) {
                    let message = format!(
                        "Secret {}: its values were not read from the environment",
                        s.id()
                    );
                    let cluster = c.name.clone();
                    failed.insert(c.name.clone(), ClusterError::Prepare { cluster, message });
                }
            }
            _ => {}
        }
    }
    (p, failed)
}

/// Observe, plan and execute. Keeps going past a failed cluster; a cluster whose step failed
/// skips its remaining steps (they depend on it).
pub async fn apply<K: KindCli, N: NodeOps>(
    kind: &K,
    engine: &N,
    desired: &Desired,
    wiring: Option<&Wiring>,
    opts: &ApplyOptions,
) -> Result<ClusterReport, ClusterError> {
    let mut s = Session::new(kind, engine, opts);
    let (observed, warnings) = s.observe(desired, wiring).await?;
    let steps = plan(desired, &observed);
    let mut report = ClusterReport {
        notices: warnings,
        ..Default::default()
    };
    let (prepared, unprepared) = prepare(&steps, desired, opts).await;
    let mut broken: BTreeSet<String> = unprepared.keys().cloned().collect();
    for (cluster, e) in unprepared {
        report.tried += 1;
        report.failed += 1;
        tracing::error!(cluster = %cluster, error = %e, "cluster not changed");
        report.errors.push(e);
    }
    for step in &steps {
        let name = step.cluster().to_string();
        if step.is_report() {
            tracing::warn!(cluster = %name, step = %step, "cluster left as is");
            report.notices.push(step.to_string());
            continue;
        }
        if broken.contains(&name) {
            continue;
        }
        report.tried += 1;
        match run_step(&mut s, step, desired, wiring, &prepared).await {
            Ok(()) => {
                tracing::info!(cluster = %name, step = %step, "cluster step done");
                report.changed += 1;
                report.done.push(step.clone());
            }
            Err(e) => {
                tracing::error!(cluster = %name, error = %e, "cluster step failed");
                report.failed += 1;
                report.errors.push(ClusterError::Step {
                    cluster: name.clone(),
                    step: step.to_string(),
                    source: Box::new(e),
                });
                broken.insert(name);
            }
        }
    }
    Ok(report)
}

async fn run_step<K: KindCli, N: NodeOps>(
    s: &mut Session<'_, K, N>,
    step: &ClusterStep,
    desired: &Desired,
    wiring: Option<&Wiring>,
    prepared: &Prepared,
) -> Result<(), ClusterError> {
    let name = step.cluster();
    let spec = desired.clusters.iter().find(|c| c.name == name);
    match step {
        ClusterStep::Create { .. } | ClusterStep::Recreate { .. } => {
            let c = spec.expect("create and recreate are planned for desired clusters");
            if matches!(step, ClusterStep::Recreate { .. }) {
                s.kind.delete(name).await?;
                s.clients.remove(name);
            }
            let dir = s.opts.state_dir.join("clusters").join(name);
            let path = dir.join("kind-config.yaml");
            let io = |source| ClusterError::Io {
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            std::fs::write(&path, kindconfig::render(name, &c.spec)).map_err(io)?;
            check_ports(name, &c.spec)?;
            s.kind.create(name, &path, s.opts.create_wait).await?;
            s.refresh_nodes().await
        }
        ClusterStep::Delete { .. } => {
            s.clients.remove(name);
            s.kind.delete(name).await
        }
        ClusterStep::WireRegistry { .. } => {
            let w = wiring.expect("registry steps are planned only with a registry");
            let nodes = s.nodes.get(name).cloned().unwrap_or_default();
            w.wire(s.engine, &nodes).await?;
            let cm = w.configmap();
            let c = s.client(name).await?;
            if !c.configmap_matches(&cm).await? {
                c.apply(&[cm]).await?;
            }
            Ok(())
        }
        ClusterStep::InstallFlux { .. } => {
            let (objects, installed) = prepared
                .manifests
                .get(name)
                .expect("prepared before the first step");
            let timeout = s.opts.flux_timeout;
            let mark = InstallMark {
                version: installed.version.clone(),
                sha256: installed.sha256.clone(),
            };
            let state_dir = s.opts.state_dir.clone();
            let client = s.client(name).await?;
            client.install(objects, &mark, timeout).await?;
            // Only after the new version rolled out: remove what it no longer ships.
            if let Some(old) = release::read_installed(&state_dir, name) {
                let (remove, keep) = release::dropped(&old.inventory, &installed.inventory);
                for o in &remove {
                    client.delete(o).await?;
                    tracing::info!(cluster = %name, object = %o, from = %old.version, "removed: not in the new Flux version");
                }
                for o in &keep {
                    tracing::warn!(cluster = %name, object = %o, "not in the new Flux version; left in place (removing it would remove what it holds)");
                }
            }
            release::write_installed(&state_dir, name, installed)
        }
        ClusterStep::SyncFlux { .. } => {
            let objects = prepared
                .sync
                .get(name)
                .expect("prepared before the first step");
            s.client(name).await?.apply(objects).await
        }
        ClusterStep::AttachHostServices { .. } => {
            host_services::attach(s.engine, &s.opts.kind_network, &desired.host_services).await
        }
        ClusterStep::Secrets { .. } => {
            let c = spec.expect("secrets are planned for desired clusters");
            let mut objects = Vec::new();
            for secret in &c.secrets {
                objects.extend(secret.objects().ok_or_else(|| ClusterError::Config {
                    cluster: name.to_string(),
                    message: format!(
                        "Secret {}: its values were not read from the environment",
                        secret.id()
                    ),
                })?);
            }
            s.client(name).await?.apply(&objects).await
        }
        ClusterStep::PushArtifact { .. } => {
            let c = spec.expect("artifacts are planned for desired clusters");
            push_artifact(name, c, &s.opts.provenance, s.opts.fetch_timeout).await
        }
        ClusterStep::NeedsRecreate { .. } | ClusterStep::Unmanaged { .. } => Ok(()),
    }
}

/// Push the cluster's artifact under its revision's tag and the moving tag, annotated as
/// `flux push artifact` annotates it.
async fn push_artifact(
    name: &str,
    c: &super::plan::DesiredCluster,
    provenance: &Provenance,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let (FluxSource::Oci(t), Some(artifact)) = (&c.flux.source, &c.artifact) else {
        return Ok(());
    };
    let err = |source| ClusterError::Oci {
        cluster: name.to_string(),
        source,
    };
    let mut annotations = BTreeMap::new();
    if let Some(source) = &provenance.source {
        annotations.insert(oci::SOURCE_ANNOTATION.to_string(), source.clone());
    }
    if let Some(revision) = provenance.revision() {
        annotations.insert(oci::REVISION_ANNOTATION.to_string(), revision);
    }
    annotations.insert(
        oci::CREATED_ANNOTATION.to_string(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let tags = [provenance.revision_tag(artifact), t.tag.clone()];
    let digest = oci::Registry::new(&t.push_host, timeout)
        .map_err(err)?
        .push(&t.repository, &tags, artifact, &annotations)
        .await
        .map_err(err)?;
    tracing::info!(cluster = %name, repository = %t.repository, tags = ?tags, manifest = %digest, layer = %artifact.digest, "artifact pushed");
    Ok(())
}

/// Fail before `kind create` when a host port is taken: kind would leave a half-created
/// cluster behind and bury the cause in Docker's error text.
fn check_ports(cluster: &str, spec: &super::file::ClusterSpec) -> Result<(), ClusterError> {
    use super::file::PortProtocol;
    for m in spec.nodes.iter().flat_map(|n| &n.extra_port_mappings) {
        let addr = m.listen_address.as_deref().unwrap_or("0.0.0.0");
        let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
            continue;
        };
        let sa = std::net::SocketAddr::new(ip, m.host_port);
        let taken = match m.protocol {
            PortProtocol::Tcp => std::net::TcpListener::bind(sa).err(),
            PortProtocol::Udp => std::net::UdpSocket::bind(sa).err(),
            PortProtocol::Sctp => None,
        };
        if let Some(e) = taken.filter(|e| e.kind() == std::io::ErrorKind::AddrInUse) {
            tracing::debug!(cluster, port = m.host_port, error = %e, "host port taken");
            return Err(ClusterError::PortTaken {
                cluster: cluster.into(),
                port: format!("{sa}/{}", m.protocol),
            });
        }
    }
    Ok(())
}

/// The steps `apply` would run, for `diff`.
pub async fn diff<K: KindCli, N: NodeOps>(
    kind: &K,
    engine: &N,
    desired: &Desired,
    wiring: Option<&Wiring>,
    opts: &ApplyOptions,
) -> Result<(Vec<ClusterStep>, Vec<String>), ClusterError> {
    let mut s = Session::new(kind, engine, opts);
    let (observed, warnings) = s.observe(desired, wiring).await?;
    Ok((plan(desired, &observed), warnings))
}
