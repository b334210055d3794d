//! Clusters reach host services without host ports or fixed addresses, and get their
//! credentials from the host's environment: on the real engine, the service's containers (two
//! replicas) join the nodes' network under its alias and a node container resolves and fetches
//! from it by that name (Docker's DNS, which kind's nodes hand to pods); against the stand-in API server,
//! the Secrets are made from the environment, left alone when they match, re-applied when a
//! value changes — and no value shows in `diff`.

use crate::support::cluster as support;

use crate::support::docker::Sandbox;
use crate::support::image;
use macula_gitops::cluster::apply;
use macula_gitops::cluster::docker::NodeOps;
use macula_gitops::cluster::flux::base64;
use macula_gitops::desired::catalog::{Catalog, Protocol, ServiceRef};
use macula_gitops::desired::interpolate::Env;

#[tokio::test]
async fn host_service_by_name_and_secrets_from_the_environment() {
    let mut g = Sandbox::new().await;
    let image = image::busybox().to_string();
    let net = g.network("kind").await;
    // PowerDNS's place: a container of the host stacks, not on the nodes' network.
    let pdns = support::httpd(&mut g, "pdns", 8081).await;
    // Its second replica: the alias names both.
    let pdns_2 = support::httpd(&mut g, "pdns-2", 8081).await;
    let name = format!("{}-dev", g.id);
    let node = support::control_plane(&mut g, "dev", &name, &net).await;
    let (fixture, sha) = support::flux_fixture();
    let text = format!(
        "host_services: [{{service: infrastructure/pdns, alias: macula-pdns}}]\n\
         flux: {{version: v2.4.0, install_url: 'file://{}', sha256: '{sha}', git_url: 'https://github.com/macula-io/macula-gitops.git'}}\n\
         clusters:\n  {name}:\n    image: '{image}'\n    nodes: [{{role: control-plane}}]\n    flux: {{path: ./clusters/dev}}\n    secrets:\n      - {{name: external-dns-pdns, namespace: external-dns, data: {{api-key: PDNS_API_KEY}}}}\n",
        fixture.display()
    );
    let catalog = Catalog {
        services: vec![ServiceRef {
            stack: "infrastructure".into(),
            service: "pdns".into(),
            container_name: pdns.clone(),
            containers: vec![pdns.clone(), pdns_2.clone()],
            networks: vec![],
            container_ports: vec![(8081, Protocol::Tcp)],
            published: vec![],
        }],
    };
    let selected = [name.clone()];
    let env = |key: &str| Env::from_pairs([("PDNS_API_KEY", key)]);
    let (desired, _) =
        support::desired_with_env(&text, &catalog, &selected, &net, &env("first-k3y"));

    let one = support::OneCluster::start(&name, &net).await;
    let (api, kind, engine, opts) = (&one.api, &one.kind, &one.engine, &one.opts);
    let name_ = &name;
    let diff = |d| async move {
        let (steps, _) = apply::diff(kind, engine, d, None, opts).await.unwrap();
        steps
            .iter()
            .filter(|s| s.cluster() == name_.as_str())
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };

    let first = diff(&desired).await;
    assert!(
        first.contains(&format!(
            "~ cluster {name}: reach host services by name (infrastructure/pdns as macula-pdns)"
        )),
        "{first:#?}"
    );
    assert!(
        first.contains(&format!(
            "~ cluster {name}: secrets external-dns/external-dns-pdns (api-key ← $PDNS_API_KEY)"
        )),
        "{first:#?}"
    );
    assert!(!first.iter().any(|l| l.contains("first-k3y")));

    let report = apply::apply(kind, engine, &desired, None, opts)
        .await
        .unwrap();
    assert_eq!(report.failed, 0, "{report:#?}");
    // The node resolves the alias through Docker's DNS and reaches the service by it.
    let (code, out, err) = engine
        .exec(
            &node,
            vec![
                "wget".into(),
                "-qO-".into(),
                "http://macula-pdns:8081/etc/hostname".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let replicas =
        [&pdns, &pdns_2].map(|c| crate::support::docker::container_id(c)[..12].to_string());
    assert!(
        replicas.contains(&out.trim().to_string()),
        "answered by a PowerDNS replica: {out}"
    );
    for c in [&pdns, &pdns_2] {
        let aliases = engine.aliases(&net, c).await.unwrap();
        assert!(
            aliases
                .as_ref()
                .is_some_and(|a| a.contains(&"macula-pdns".to_string())),
            "{c}: {aliases:?}"
        );
    }
    let secret = api
        .object("/v1/secrets/external-dns/external-dns-pdns")
        .expect("Secret made by the agent");
    assert_eq!(secret["data"]["api-key"], base64(b"first-k3y"));
    assert!(api.object("/v1/namespaces//external-dns").is_some());

    // Converged: nothing planned, nothing done.
    assert_eq!(diff(&desired).await, Vec::<String>::new());
    let again = apply::apply(kind, engine, &desired, None, opts)
        .await
        .unwrap();
    assert_eq!((again.tried, again.changed), (0, 0), "{again:#?}");

    // The host's value changed: only the Secret is re-applied.
    let (rotated, _) =
        support::desired_with_env(&text, &catalog, &selected, &net, &env("second-k3y"));
    assert_eq!(
        diff(&rotated).await,
        [format!(
            "~ cluster {name}: secrets external-dns/external-dns-pdns (api-key ← $PDNS_API_KEY)"
        )]
    );
    let report = apply::apply(kind, engine, &rotated, None, opts)
        .await
        .unwrap();
    assert_eq!((report.failed, report.changed), (0, 1), "{report:#?}");
    let secret = api
        .object("/v1/secrets/external-dns/external-dns-pdns")
        .unwrap();
    assert_eq!(secret["data"]["api-key"], base64(b"second-k3y"));
}
