//! The `kind` CLI step, through a recording `kind` executable found on a PATH value.

use crate::support::cluster as support;

use std::time::Duration;

use macula_gitops::cluster::kind::{Kind, KindCli};
use macula_gitops::cluster::{kindconfig, ClusterError};
use support::recording_kind::RecordingKind;

const SPEC: &str = "
image: kindest/node:v1.31.0
nodes:
  - role: control-plane
    extraPortMappings:
      - {containerPort: 80, hostPort: 8080, protocol: TCP}
      - {containerPort: 4433, hostPort: 4433, protocol: UDP, listenAddress: 127.0.0.1}
  - role: worker
";

#[tokio::test]
async fn create_passes_name_config_and_wait() {
    let rec = RecordingKind::new();
    let kind = Kind::from_path_var(&rec.path_var()).unwrap();
    assert_eq!(kind.program(), rec.dir.path().join("kind"));
    let spec = serde_yaml::from_str(SPEC).unwrap();
    let cfg = rec.dir.path().join("in.yaml");
    std::fs::write(&cfg, kindconfig::render("macula-dev", &spec)).unwrap();

    assert_eq!(kind.clusters().await.unwrap(), Vec::<String>::new());
    kind.create("macula-dev", &cfg, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(
        kind.clusters().await.unwrap(),
        vec!["macula-dev".to_string()]
    );
    rec.set_kubeconfig("macula-dev", "apiVersion: v1\nkind: Config\n");
    assert_eq!(
        kind.kubeconfig("macula-dev").await.unwrap(),
        "apiVersion: v1\nkind: Config\n"
    );
    kind.delete("macula-dev").await.unwrap();

    assert_eq!(
        rec.calls(),
        vec![
            "get clusters".to_string(),
            format!(
                "create cluster --name macula-dev --config {} --wait 300s",
                cfg.display()
            ),
            "get clusters".into(),
            "get kubeconfig --name macula-dev".into(),
            "delete cluster --name macula-dev".into(),
        ]
    );
    // kind received the generated config, field by field.
    let got: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rec.config_copy()).unwrap()).unwrap();
    assert_eq!(got["apiVersion"], "kind.x-k8s.io/v1alpha4");
    assert_eq!(got["name"], "macula-dev");
    assert_eq!(got["nodes"][0]["image"], "kindest/node:v1.31.0");
    assert_eq!(got["nodes"][0]["extraPortMappings"][1]["protocol"], "UDP");
    assert_eq!(
        got["nodes"][0]["extraPortMappings"][1]["listenAddress"],
        "127.0.0.1"
    );
    assert_eq!(got["nodes"][1]["role"], "worker");
    assert!(got["containerdConfigPatches"][0]
        .as_str()
        .unwrap()
        .contains("config_path = \"/etc/containerd/certs.d\""));
}

#[tokio::test]
async fn clear_errors() {
    assert!(matches!(
        Kind::from_path_var(std::ffi::OsStr::new("/nonexistent")),
        Err(ClusterError::KindMissing)
    ));
    let rec = RecordingKind::new();
    let kind = Kind::from_path_var(&rec.path_var()).unwrap();
    rec.fail_with("ERROR: failed to create cluster: docker: Error response from daemon: Bind for 0.0.0.0:8080 failed: port is already allocated.");
    let err = kind
        .create(
            "dev",
            std::path::Path::new("/dev/null"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster dev: host port 0.0.0.0:8080 is already in use on this host"
    );
}

/// A taken host port stops the create before kind runs, with the port in the message.
#[tokio::test]
async fn taken_host_port_is_reported_before_kind_runs() {
    use macula_gitops::cluster::apply::ApplyOptions;
    use macula_gitops::cluster::docker::ClusterEngine;
    use macula_gitops::desired::catalog::Catalog;

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let name = format!("{}-ports", crate::support::unique_id());
    let text = format!(
        "flux: {{version: v2.4.0, install_url: 'file:///nonexistent', sha256: '{}', git_url: 'https://example.org/r.git'}}\n\
         clusters:\n  {name}:\n    image: kindest/node:v1.31.0\n    nodes:\n      - role: control-plane\n        extraPortMappings: [{{containerPort: 80, hostPort: {port}, listenAddress: 127.0.0.1}}]\n",
        "0".repeat(64)
    );
    let (mut desired, wiring) = support::desired(
        &text,
        &Catalog::default(),
        std::slice::from_ref(&name),
        "kind",
    );
    desired.registry = None;
    let rec = RecordingKind::new();
    let kind = Kind::from_path_var(&rec.path_var()).unwrap();
    let engine = ClusterEngine::connect().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        state_dir: state.path().into(),
        ..Default::default()
    };
    // The install.yaml cannot be fetched: that cluster fails before any change...
    let report = support::apply_once(&kind, &engine, &desired, wiring.as_ref(), &opts).await;
    assert_eq!(report.failed, 1, "{report:#?}");
    assert!(
        report.errors[0]
            .to_string()
            .contains("fetching file:///nonexistent"),
        "{report:#?}"
    );
    // The failure names its cluster (the subject `apply --output json` reports).
    assert_eq!(report.errors[0].cluster(), Some(name.as_str()));
    assert!(
        !rec.calls().iter().any(|c| c.starts_with("create")),
        "nothing created when preparation failed"
    );
    // ...and with a valid manifest, the taken port stops the create.
    let (fixture, sha) = support::flux_fixture();
    desired.clusters[0].flux.install_url = format!("file://{}", fixture.display());
    desired.clusters[0].flux.sha256 = Some(sha);
    let report = support::apply_once(&kind, &engine, &desired, wiring.as_ref(), &opts).await;
    assert_eq!(report.failed, 1, "{report:#?}");
    assert!(
        report.errors[0].to_string().ends_with(&format!(
            "cluster {name}: host port 127.0.0.1:{port}/TCP is already in use on this host"
        )),
        "{report:#?}"
    );
    assert!(
        !rec.calls().iter().any(|c| c.starts_with("create")),
        "{:?}",
        rec.calls()
    );
    drop(held);
}
