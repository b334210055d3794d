//! Stand-ins for what a cluster test cannot run here: a `kind` that records its command lines,
//! a Kubernetes API server that serves what Flux bootstrap needs, and the reduced Flux install.

pub mod openapi;
pub mod recording_kind;
pub mod registry;
pub mod release_dir;
pub mod ssa;
pub mod standin_apiserver;

use macula_gitops::cluster::apply::{self, ApplyOptions};
use macula_gitops::cluster::docker::NodeOps;
use macula_gitops::cluster::kind::KindCli;
use macula_gitops::cluster::registry::Wiring;
use macula_gitops::cluster::{resolve, ClusterReport, ClustersFile, Desired};
use macula_gitops::desired::catalog::Catalog;
use macula_gitops::desired::interpolate::Env;

/// `clusters.yaml` text resolved for a host that selects `selected`, as `apply` receives it
/// (no prune, nodes on `kind_network`); panics with the diagnostics if it does not resolve.
pub fn desired(
    text: &str,
    catalog: &Catalog,
    selected: &[String],
    kind_network: &str,
) -> (Desired, Option<Wiring>) {
    desired_with_env(text, catalog, selected, kind_network, &Env::default())
}

/// [`desired`] with the clusters' Secrets read from `env`, as `load_for_host` does.
pub fn desired_with_env(
    text: &str,
    catalog: &Catalog,
    selected: &[String],
    kind_network: &str,
    env: &Env,
) -> (Desired, Option<Wiring>) {
    let file: ClustersFile = serde_yaml::from_str(text).expect("clusters.yaml text parses");
    let (mut clusters, mut diags) = resolve(&file, catalog, selected, None);
    diags.extend(macula_gitops::cluster::secrets::read_all(
        &mut clusters,
        &file,
        env,
    ));
    assert!(!diags.has_errors(), "{diags:?}");
    clusters.desired(false, kind_network)
}

/// One `apply` pass with an empty environment; only the engine connection may fail it.
pub async fn apply_once<K: KindCli, N: NodeOps>(
    kind: &K,
    engine: &N,
    desired: &Desired,
    wiring: Option<&Wiring>,
    opts: &ApplyOptions,
) -> ClusterReport {
    apply::apply(kind, engine, desired, wiring, opts)
        .await
        .expect("apply pass runs")
}

/// The reduced Flux install.yaml fixture and its sha256.
pub fn flux_fixture() -> (std::path::PathBuf, String) {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux-install.yaml");
    let sum = macula_gitops::cluster::flux::sha256_hex(&std::fs::read(&p).expect("fixture"));
    (p, sum)
}

/// Install the fixture as Flux `version` through `c` (the agent's install: CRDs, waits, mark);
/// its sha256.
pub async fn install_fixture(
    c: &macula_gitops::cluster::kube_ops::KubeCluster,
    version: &str,
) -> String {
    use macula_gitops::cluster::kube_ops::{FluxBootstrap, InstallMark};
    let (path, sha) = flux_fixture();
    let text = std::fs::read_to_string(path).unwrap();
    let objects = macula_gitops::cluster::flux::parse_manifests("fixture", &text).unwrap();
    let mark = InstallMark {
        version: version.into(),
        sha256: sha.clone(),
    };
    c.install(&objects, &mark, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    sha
}

/// [`serve_local`] over TLS: `https://127.0.0.1:<port>`.
pub async fn serve_local_tls(
    app: axum::Router,
    config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = crate::support::tls::TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(config),
    };
    (url, serve_until_dropped(listener, app))
}

/// Serve `app` on 127.0.0.1 (any free port) until the returned sender is dropped.
pub async fn serve_local(app: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, serve_until_dropped(listener, app))
}

fn serve_until_dropped<L>(listener: L, app: axum::Router) -> tokio::sync::oneshot::Sender<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

/// Options for a pass against stand-ins: state under `state_dir`, nodes on `network`, waits
/// short enough for a test.
pub fn quick_options(state_dir: &std::path::Path, network: &str) -> ApplyOptions {
    ApplyOptions {
        state_dir: state_dir.into(),
        kind_network: network.into(),
        create_wait: std::time::Duration::from_secs(60),
        flux_timeout: std::time::Duration::from_secs(10),
        fetch_timeout: std::time::Duration::from_secs(10),
        provenance: Default::default(),
    }
}

/// A container labelled as kind cluster `cluster`'s control-plane node on `network`, named
/// `<sandbox id>-<short>-control-plane` as kind names nodes.
pub async fn control_plane(
    g: &mut crate::support::docker::Sandbox,
    short: &str,
    cluster: &str,
    network: &str,
) -> String {
    use macula_gitops::cluster::docker::{CLUSTER_LABEL, ROLE_LABEL};
    let image = crate::support::image::busybox().to_string();
    g.container(
        &format!("{short}-control-plane"),
        &image,
        &["sleep", "3600"],
        Some(network),
        &[(CLUSTER_LABEL, cluster), (ROLE_LABEL, "control-plane")],
    )
    .await
}

/// A host-stack service stand-in: busybox httpd serving `/` on `port`, on no network yet.
pub async fn httpd(g: &mut crate::support::docker::Sandbox, name: &str, port: u16) -> String {
    let image = crate::support::image::busybox().to_string();
    let port = port.to_string();
    g.container(
        name,
        &image,
        &["httpd", "-f", "-p", &port, "-h", "/"],
        None,
        &[],
    )
    .await
}

/// One kind cluster as a pass sees it: a recording `kind` that hands out the kubeconfig of a
/// stand-in API server, the real engine, and a state dir; options for nodes on `network`.
pub struct OneCluster {
    pub api: standin_apiserver::StandIn,
    pub rec: recording_kind::RecordingKind,
    pub kind: macula_gitops::cluster::kind::Kind,
    pub engine: macula_gitops::cluster::docker::ClusterEngine,
    pub state: tempfile::TempDir,
    pub opts: ApplyOptions,
}

impl OneCluster {
    pub async fn start(name: &str, network: &str) -> Self {
        let api = standin_apiserver::StandIn::start().await;
        let rec = recording_kind::RecordingKind::new();
        rec.set_kubeconfig(name, &api.kubeconfig(name));
        let kind = macula_gitops::cluster::kind::Kind::from_path_var(&rec.path_var()).unwrap();
        let engine = macula_gitops::cluster::docker::ClusterEngine::connect()
            .await
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let opts = quick_options(state.path(), network);
        Self {
            api,
            rec,
            kind,
            engine,
            state,
            opts,
        }
    }
}
