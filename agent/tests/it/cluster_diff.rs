//! `diff` without the kind binary: clusters are found on the real engine by kind's node labels
//! and reached through the admin kubeconfig on their control-plane node (here pointing at a
//! stand-in API server), so the Flux install, upgrade and sync lines are exact — and a cluster
//! that does not exist yet, or is not desired, is still reported.

use crate::support::cluster as support;
use crate::support::docker::Sandbox;

use std::time::Duration;

use macula_gitops::cluster::apply;
use macula_gitops::cluster::docker::{ClusterEngine, NodeOps};
use macula_gitops::cluster::flux;
use macula_gitops::cluster::kind::KindCli;
use macula_gitops::cluster::kube_ops::{FluxBootstrap, InstallMark, KubeCluster};
use macula_gitops::cluster::nokind::{EngineKind, ADMIN_CONF};
use macula_gitops::cluster::ClusterError;
use macula_gitops::desired::catalog::Catalog;
use support::standin_apiserver::StandIn;

#[tokio::test]
async fn diff_without_kind_reads_clusters_from_the_engine() {
    let mut g = Sandbox::new().await;
    let net = g.network("kind").await;
    let (dev, new, old) = (
        format!("{}-dev", g.id),
        format!("{}-new", g.id),
        format!("{}-old", g.id),
    );
    let node = support::control_plane(&mut g, "dev", &dev, &net).await;
    support::control_plane(&mut g, "old", &old, &net).await;
    let api = StandIn::start().await;
    let engine = ClusterEngine::connect().await.unwrap();
    engine
        .write_file(&node, ADMIN_CONF, &api.kubeconfig(&dev))
        .await
        .unwrap();
    let kind = EngineKind {
        engine: engine.clone(),
    };
    let mut listed = kind.clusters().await.unwrap();
    listed.retain(|c| c.starts_with(&g.id));
    assert_eq!(listed, [dev.clone(), old.clone()]);
    assert!(matches!(
        kind.delete(&dev).await,
        Err(ClusterError::KindMissing)
    ));

    let image = crate::support::image::busybox().to_string();
    let text = format!(
        "flux: {{version: v2.9.5, git_url: 'https://github.com/macula-io/macula-gitops.git', sync_interval: 1m}}\n\
         clusters:\n  {dev}: {{image: '{image}', nodes: [{{role: control-plane}}], flux: {{path: ./clusters/dev}}}}\n  {new}: {{image: 'kindest/node:v1.36.4', nodes: [{{role: control-plane}}], flux: {{path: ./clusters/new}}}}\n"
    );
    let (desired, _) = support::desired(
        &text,
        &Catalog::default(),
        &[dev.clone(), new.clone()],
        &net,
    );
    let state = tempfile::tempdir().unwrap();
    let opts = support::quick_options(state.path(), &net);
    let lines = |steps: Vec<macula_gitops::cluster::ClusterStep>| {
        steps
            .iter()
            .map(|s| s.to_string())
            .filter(|l| [&dev, &new, &old].iter().any(|n| l.contains(n.as_str())))
            .collect::<Vec<_>>()
    };

    let (steps, warnings) = apply::diff(&kind, &engine, &desired, None, &opts)
        .await
        .unwrap();
    assert!(warnings.iter().all(|w| !w.contains(&dev)), "{warnings:?}");
    assert_eq!(
        lines(steps),
        [
            format!("+ cluster {dev}: install flux v2.9.5 (verified by the release's checksums)"),
            format!("~ cluster {dev}: flux sync (create GitRepository https://github.com/macula-io/macula-gitops.git (main) and Kustomization ./clusters/dev)"),
            format!("+ cluster {new} (1 node, kindest/node:v1.36.4)"),
            format!("+ cluster {new}: install flux v2.9.5 (verified by the release's checksums)"),
            format!("~ cluster {new}: flux sync (create GitRepository https://github.com/macula-io/macula-gitops.git (main) and Kustomization ./clusters/new)"),
            format!("! cluster {old}: running but not desired (left running; prune to delete)"),
        ]
    );

    // An older Flux and the sync objects in place: diff says upgrade, and nothing else.
    let c = KubeCluster::from_kubeconfig(&dev, &kind.kubeconfig(&dev).await.unwrap())
        .await
        .unwrap();
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    let mark = InstallMark {
        version: "v2.8.0".into(),
        sha256: sha,
    };
    c.install(&objects, &mark, Duration::from_secs(10))
        .await
        .unwrap();
    c.apply(&flux::sync_objects(&desired.clusters[0].flux))
        .await
        .unwrap();
    let (steps, _) = apply::diff(&kind, &engine, &desired, None, &opts)
        .await
        .unwrap();
    let dev_lines: Vec<String> = lines(steps)
        .into_iter()
        .filter(|l| l.contains(&dev))
        .collect();
    assert_eq!(
        dev_lines,
        [format!(
            "~ cluster {dev}: upgrade flux v2.8.0 → v2.9.5 (verified by the release's checksums)"
        )]
    );
}
