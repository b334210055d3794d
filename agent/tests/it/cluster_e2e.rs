//! Real end to end: `kind` creates a cluster, the agent bootstraps Flux from the local fixture
//! install.yaml and creates the sync objects. Runs only where `kind` is on PATH (and the
//! engine can pull kind's node image and Flux's controller images); prints `skipped: <reason>`
//! elsewhere.

use crate::support::cluster as support;

use std::time::Duration;

use macula_gitops::cluster::apply::ApplyOptions;
use macula_gitops::cluster::docker::ClusterEngine;
use macula_gitops::cluster::kind::{Kind, KindCli};
use macula_gitops::cluster::kube_ops::{FluxBootstrap, KubeCluster};
use macula_gitops::desired::catalog::Catalog;

struct DeleteCluster(Kind, String);

impl Drop for DeleteCluster {
    fn drop(&mut self) {
        let (kind, name) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(kind.delete(&name));
        })
        .join()
        .ok();
    }
}

#[tokio::test]
async fn kind_cluster_with_flux() {
    let Ok(kind) = Kind::from_env() else {
        println!("skipped: kind not on PATH");
        return;
    };
    let Ok(engine) = ClusterEngine::connect().await else {
        println!("skipped: no container engine");
        return;
    };
    let name = crate::support::unique_id();
    let _cleanup = DeleteCluster(kind.clone(), name.clone());
    let (fixture, sha) = support::flux_fixture();
    let text = format!(
        "flux: {{version: v2.4.0, install_url: 'file://{}', sha256: '{sha}', git_url: 'https://github.com/macula-io/macula-gitops.git'}}\n\
         clusters:\n  {name}: {{image: 'kindest/node:v1.31.0', nodes: [{{role: control-plane}}]}}\n",
        fixture.display()
    );
    let (desired, wiring) = support::desired(
        &text,
        &Catalog::default(),
        std::slice::from_ref(&name),
        "kind",
    );
    let state = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        state_dir: state.path().into(),
        kind_network: "kind".into(),
        create_wait: Duration::from_secs(300),
        flux_timeout: Duration::from_secs(600),
        fetch_timeout: Duration::from_secs(10),
        provenance: Default::default(),
    };
    let report = support::apply_once(&kind, &engine, &desired, wiring.as_ref(), &opts).await;
    assert_eq!(report.failed, 0, "{report:#?}");

    let c = KubeCluster::from_kubeconfig(&name, &kind.kubeconfig(&name).await.unwrap())
        .await
        .unwrap();
    let flux = c.observe_flux().await.unwrap();
    assert_eq!(flux.install_sha256.as_deref(), Some(sha.as_str()));
    let sync = flux.sync.expect("GitRepository and Kustomization exist");
    assert_eq!(
        (sync.path.as_str(), sync.branch.as_str(), sync.prune),
        (format!("./clusters/{name}").as_str(), "main", true)
    );

    let again = support::apply_once(&kind, &engine, &desired, wiring.as_ref(), &opts).await;
    assert_eq!(again.changed, 0, "{again:#?}");
}
