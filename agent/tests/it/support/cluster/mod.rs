//! Stand-ins for what a cluster test cannot run here: a `kind` that records its command lines,
//! a Kubernetes API server that serves what Flux bootstrap needs, and the reduced Flux install.

pub mod recording_kind;
pub mod release_dir;
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
    let file: ClustersFile = serde_yaml::from_str(text).expect("clusters.yaml text parses");
    let (clusters, diags) = resolve(&file, catalog, selected, None);
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
    apply::apply(kind, engine, desired, wiring, opts, &Env::default())
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

/// Serve `app` on 127.0.0.1 (any free port) until the returned sender is dropped.
pub async fn serve_local(app: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (url, tx)
}
