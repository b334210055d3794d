//! One cluster pass end to end on this machine: the recording `kind` (which starts a node
//! container as kind would), node containers on the real engine, and one stand-in API server
//! per cluster. Checks the first pass, that a second pass changes nothing, and status.

use crate::support::cluster as support;

use crate::support::docker::Sandbox;
use crate::support::image;
use macula_gitops::cluster::apply;
use macula_gitops::cluster::docker::ClusterEngine;
use macula_gitops::cluster::kind::Kind;
use macula_gitops::cluster::plan::ClusterStep;
use macula_gitops::cluster::status;
use macula_gitops::desired::catalog::{Catalog, Protocol, ServiceRef};
use serde_json::json;
use support::recording_kind::RecordingKind;
use support::standin_apiserver::StandIn;

#[tokio::test]
async fn apply_creates_wires_bootstraps_and_converges() {
    let mut g = Sandbox::new().await;
    let image = image::busybox().to_string();
    let net = g.network("kind").await;
    let registry = support::httpd(&mut g, "registry", 5000).await;
    let (dev, new) = (format!("{}-dev", g.id), format!("{}-new", g.id));
    // `dev` already runs; `new` is created by this pass.
    let dev_node = support::control_plane(&mut g, "dev", &dev, &net).await;
    g.cleanup.container(&format!("{new}-control-plane"));

    let (fixture, sha) = support::flux_fixture();
    let text = format!(
        "registry: {{service: infrastructure/registry, host: 'localhost:5001', cluster: 'kind-registry:5000'}}\n\
         flux: {{version: v2.4.0, install_url: 'file://{}', sha256: '{sha}', git_url: 'https://github.com/macula-io/macula-gitops.git', branch: main}}\n\
         clusters:\n  {dev}: {{image: '{image}', nodes: [{{role: control-plane}}], flux: {{path: ./clusters/dev}}}}\n  {new}: {{image: '{image}', nodes: [{{role: control-plane}}], flux: {{path: ./clusters/new}}}}\n",
        fixture.display()
    );
    let catalog = Catalog {
        services: vec![ServiceRef {
            stack: "infrastructure".into(),
            service: "registry".into(),
            container_name: registry.clone(),
            containers: vec![registry.clone()],
            networks: vec![],
            container_ports: vec![(5000, Protocol::Tcp)],
            published: vec![(None, 5001, Protocol::Tcp)],
        }],
    };
    let (desired, wiring) = support::desired(&text, &catalog, &[dev.clone(), new.clone()], &net);

    let (api_dev, api_new) = (StandIn::start().await, StandIn::start().await);
    let rec = RecordingKind::new();
    rec.set_kubeconfig(&dev, &api_dev.kubeconfig(&dev));
    rec.set_kubeconfig(&new, &api_new.kubeconfig(&new));
    rec.create_nodes(&net, &image);
    let kind = Kind::from_path_var(&rec.path_var()).unwrap();
    let engine = ClusterEngine::connect().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let opts = support::quick_options(state.path(), &net);

    let (steps, _) = apply::diff(&kind, &engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    let ours: Vec<String> = steps
        .iter()
        .filter(|s| [&dev, &new].contains(&&s.cluster().to_string()))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(ours[0], format!("~ cluster {dev}: wire registry (connect registry to kind network, containerd hosts.toml, ConfigMap kube-public/local-registry-hosting)"));
    assert!(
        ours.contains(&format!("+ cluster {new} (1 node, {image})")),
        "{ours:#?}"
    );
    assert_eq!(ours.len(), 7, "{ours:#?}");

    let report = apply::apply(&kind, &engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!((report.failed, report.changed), (0, 7), "{report:#?}");
    let config = state
        .path()
        .join(format!("clusters/{new}/kind-config.yaml"));
    assert!(
        rec.calls().contains(&format!(
            "create cluster --name {new} --config {} --wait 60s",
            config.display()
        )),
        "{:?}",
        rec.calls()
    );
    assert_eq!(
        std::fs::read_to_string(rec.config_copy()).unwrap(),
        std::fs::read_to_string(&config).unwrap()
    );

    for (api, name, node) in [
        (&api_dev, &dev, dev_node.clone()),
        (&api_new, &new, format!("{new}-control-plane")),
    ] {
        let cm = api
            .object("/v1/configmaps/kube-public/local-registry-hosting")
            .expect("ConfigMap applied");
        assert_eq!(
            cm["data"]["localRegistryHosting.v1"],
            "host: \"localhost:5001\"\nhostFromContainerRuntime: \"kind-registry:5000\"\nhostFromClusterNetwork: \"kind-registry:5000\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n"
        );
        let ks = api
            .object("kustomize.toolkit.fluxcd.io/v1/kustomizations/flux-system/flux-system")
            .unwrap();
        assert_eq!(
            ks["spec"]["path"],
            format!("./clusters/{}", name.rsplit('-').next().unwrap())
        );
        let (code, out, _) = engine
            .exec(
                &node,
                vec![
                    "cat".into(),
                    "/etc/containerd/certs.d/localhost:5001/hosts.toml".into(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            (code, out.as_str()),
            (0, "[host.\"http://kind-registry:5000\"]\n")
        );
        // CRDs went in before everything else.
        let kinds: Vec<String> = api.applied().into_iter().map(|(k, _)| k).collect();
        let last_crd = kinds
            .iter()
            .rposition(|k| k == "CustomResourceDefinition")
            .unwrap();
        let first_other = kinds
            .iter()
            .position(|k| k != "CustomResourceDefinition" && k != "ConfigMap")
            .unwrap();
        assert!(last_crd < first_other, "{kinds:?}");
    }

    // Second pass: converged, nothing sent, nothing created.
    api_dev.clear_requests();
    api_new.clear_requests();
    let calls_before = rec.calls().len();
    let report = apply::apply(&kind, &engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(
        (report.tried, report.failed, report.changed),
        (0, 0, 0),
        "{report:#?}"
    );
    assert!(
        api_dev
            .requests()
            .iter()
            .chain(api_new.requests().iter())
            .all(|r| r.method == "GET"),
        "only reads on a converged cluster"
    );
    assert!(
        rec.calls()[calls_before..]
            .iter()
            .all(|c| c.starts_with("get kubeconfig")),
        "{:?}",
        rec.calls()
    );
    let (steps, _) = apply::diff(&kind, &engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert!(
        steps
            .iter()
            .all(|s| matches!(s, ClusterStep::Unmanaged { .. })),
        "{steps:?}"
    );

    // Status: Ready and revision of the Kustomizations, per cluster.
    api_dev.set_status(
        "kustomize.toolkit.fluxcd.io/v1/kustomizations/flux-system/flux-system",
        json!({"lastAppliedRevision": "main@sha1:abc", "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}]}),
    );
    let st = status(
        &kind,
        &engine,
        &[dev.clone(), new.clone(), format!("{}-gone", g.id)],
    )
    .await;
    assert!(st[0].exists && st[0].ready(), "{st:?}");
    assert_eq!(
        st[0].kustomizations[0].revision.as_deref(),
        Some("main@sha1:abc")
    );
    assert!(
        st[1].exists && !st[1].ready() && st[1].kustomizations[0].ready == "Unknown",
        "{st:?}"
    );
    assert_eq!(
        (st[2].exists, st[2].error.as_deref()),
        (false, Some("cluster does not exist"))
    );
}
