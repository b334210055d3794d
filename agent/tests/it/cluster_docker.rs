//! Registry wiring and image build/push against the real Docker engine. Containers labelled
//! as kind nodes on a test network stand in for a kind cluster's nodes.

use crate::support::docker::Sandbox;
use crate::support::image;
use macula_gitops::cluster::docker::{ClusterEngine, NodeOps, CLUSTER_LABEL, ROLE_LABEL};
use macula_gitops::cluster::file::{RegistrySpec, Role};
use macula_gitops::cluster::registry::Wiring;

#[tokio::test]
async fn registry_wiring_on_fake_nodes() {
    let mut g = Sandbox::new().await;
    let image = image::busybox().to_string();
    let net = g.network("kind").await;
    let cluster = format!("{}-c", g.id);
    let cp = g
        .container(
            "control-plane",
            &image,
            &["sleep", "3600"],
            Some(&net),
            &[(CLUSTER_LABEL, &cluster), (ROLE_LABEL, "control-plane")],
        )
        .await;
    let worker = g
        .container(
            "worker",
            &image,
            &["sleep", "3600"],
            Some(&net),
            &[(CLUSTER_LABEL, &cluster), (ROLE_LABEL, "worker")],
        )
        .await;
    let registry = g
        .container(
            "registry",
            &image,
            &["httpd", "-f", "-p", "5000", "-h", "/"],
            None,
            &[],
        )
        .await;

    let engine = ClusterEngine::connect().await.unwrap();
    let all = engine.kind_nodes().await.unwrap();
    let nodes = all
        .get(&cluster)
        .expect("the fake nodes are found by kind's labels")
        .clone();
    let found: Vec<(String, Role, String)> = nodes
        .iter()
        .map(|n| (n.container.clone(), n.node.role, n.node.image.clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            (cp.clone(), Role::ControlPlane, image.clone()),
            (worker.clone(), Role::Worker, image.clone())
        ]
    );

    let wiring = Wiring {
        spec: RegistrySpec {
            service: "infrastructure/registry".into(),
            host: "localhost:5001".into(),
            cluster: "kind-registry:5000".into(),
        },
        container: registry.clone(),
        network: net.clone(),
    };
    assert_eq!(
        wiring.observe(&engine, &nodes).await.unwrap(),
        (false, false)
    );
    let changed = wiring.wire(&engine, &nodes).await.unwrap();
    assert_eq!(changed.len(), 5, "{changed:?}");

    // The registry is on the network under its in-cluster name, and nodes resolve and reach it.
    let aliases = engine
        .aliases(&net, &registry)
        .await
        .unwrap()
        .expect("attached");
    assert!(
        aliases.contains(&"kind-registry".to_string()),
        "{aliases:?}"
    );
    let (code, out, err) = engine
        .exec(
            &cp,
            [
                "wget",
                "-q",
                "-O-",
                "http://kind-registry:5000/etc/hostname",
            ]
            .map(String::from)
            .to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");

    for node in [&cp, &worker] {
        for dir in ["localhost:5001", "kind-registry:5000"] {
            let (code, out, _) = engine
                .exec(
                    node,
                    vec![
                        "cat".into(),
                        format!("/etc/containerd/certs.d/{dir}/hosts.toml"),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(
                (code, out.as_str()),
                (0, "[host.\"http://kind-registry:5000\"]\n"),
                "{node} {dir}"
            );
        }
    }

    // Second run: nothing to do.
    assert_eq!(wiring.observe(&engine, &nodes).await.unwrap(), (true, true));
    assert_eq!(
        wiring.wire(&engine, &nodes).await.unwrap(),
        Vec::<String>::new()
    );

    // A node whose file was changed by hand is repaired, and only that one.
    engine
        .write_file(
            &worker,
            "/etc/containerd/certs.d/localhost:5001/hosts.toml",
            "x",
        )
        .await
        .unwrap();
    assert_eq!(
        wiring.wire(&engine, &nodes).await.unwrap(),
        vec![format!(
            "{worker}:/etc/containerd/certs.d/localhost:5001/hosts.toml"
        )]
    );
}
