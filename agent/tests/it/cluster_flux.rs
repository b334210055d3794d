//! Flux bootstrap through kube-rs against the stand-in API server: what the agent sends, in
//! which order, and that a converged cluster gets nothing.

use crate::support::cluster as support;

use std::time::Duration;

use macula_gitops::cluster::flux::{self, INSTALL_ANNOTATION};
use macula_gitops::cluster::kube_ops::{FluxBootstrap, InstallMark, KubeCluster};
use macula_gitops::cluster::plan::SyncObserved;
use macula_gitops::cluster::spec::{FluxResolved, SecretRef};
use macula_gitops::cluster::ClusterError;
use macula_gitops::desired::interpolate::Env;
use serde_json::json;
use support::standin_apiserver::StandIn;

fn resolved(sha: &str) -> FluxResolved {
    FluxResolved {
        version: "v2.4.0".into(),
        install_url: "file:///unused".into(),
        sha256: Some(sha.into()),
        git_url: "https://github.com/macula-io/macula-gitops.git".into(),
        branch: "main".into(),
        interval: "1m".into(),
        sync_interval: "10m".into(),
        path: "./clusters/macula-dev".into(),
        secret_ref: None,
    }
}

fn mark(sha: &str) -> InstallMark {
    InstallMark {
        version: "v2.4.0".into(),
        sha256: sha.into(),
    }
}

async fn client(s: &StandIn) -> KubeCluster {
    let mut c = KubeCluster::from_kubeconfig("macula-dev", &s.kubeconfig("macula-dev"))
        .await
        .unwrap();
    c.poll = Duration::from_millis(20);
    c
}

#[tokio::test]
async fn install_applies_crds_first_then_waits_then_marks() {
    let s = StandIn::start().await;
    let c = client(&s).await;
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(c.observe_flux().await.unwrap().install_sha256, None);

    c.install(&objects, &mark(&sha), Duration::from_secs(10))
        .await
        .unwrap();
    let applied = s.applied();
    let kinds: Vec<&str> = applied.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "Namespace"
        ]
    );
    // Waited for Established before anything else, and for both Deployments after.
    let reqs = s.requests();
    let first_ns_patch = reqs
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/namespaces/flux-system"))
        .unwrap();
    for crd in [
        "gitrepositories.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
    ] {
        let get = reqs
            .iter()
            .position(|r| {
                r.method == "GET"
                    && r.path
                        .ends_with(&format!("customresourcedefinitions/{crd}"))
            })
            .unwrap();
        assert!(get < first_ns_patch, "{crd} checked before the rest");
    }
    let last_dep_get = reqs
        .iter()
        .rposition(|r| r.method == "GET" && r.path.contains("/deployments/"))
        .unwrap();
    let mark = reqs.iter().rposition(|r| r.method == "PATCH").unwrap();
    assert!(
        last_dep_get < mark,
        "namespace marked only after the controllers are Available"
    );
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert!(
            r.query.contains("fieldManager=macula-gitops") && r.query.contains("force=true"),
            "{}",
            r.query
        );
    }
    let ns = s.object("/v1/namespaces//flux-system").unwrap();
    assert_eq!(
        ns["metadata"]["annotations"][INSTALL_ANNOTATION],
        sha.as_str()
    );
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/version"],
        "v2.4.0"
    );
    assert_eq!(
        c.observe_flux().await.unwrap().install_sha256.as_deref(),
        Some(sha.as_str())
    );
}

#[tokio::test]
async fn controllers_not_available_is_a_timeout_and_not_marked() {
    let s = StandIn::start().await;
    s.deployments_stuck(true);
    let c = client(&s).await;
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    let err = c
        .install(&objects, &mark(&sha), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("Deployment flux-system/source-controller rolled out"),
        "{err}"
    );
    assert_eq!(
        c.observe_flux().await.unwrap().install_sha256,
        None,
        "retried on the next pass"
    );
}

#[tokio::test]
async fn available_on_the_old_version_is_not_rolled_out() {
    let s = StandIn::start().await;
    // Available=True throughout, but the controller never reports the new generation on
    // updated replicas: what an upgrade looks like before it rolled out.
    s.deployments_rolling(true);
    let c = client(&s).await;
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    let err = c
        .install(&objects, &mark(&sha), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("waiting for Deployment flux-system/source-controller rolled out"),
        "{err}"
    );
    assert_eq!(c.observe_flux().await.unwrap().install_sha256, None);
    s.deployments_rolling(false);
    c.install(&objects, &mark(&sha), Duration::from_secs(10))
        .await
        .unwrap();
    let dep = s
        .object("apps/v1/deployments/flux-system/source-controller")
        .unwrap();
    assert_eq!(
        dep["status"]["observedGeneration"],
        dep["metadata"]["generation"]
    );
}

#[tokio::test]
async fn sync_objects_as_flux_bootstrap_creates_them() {
    let s = StandIn::start().await;
    let c = client(&s).await;
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    c.install(&objects, &mark(&sha), Duration::from_secs(10))
        .await
        .unwrap();
    s.clear_requests();

    let mut f = resolved(&sha);
    f.secret_ref = Some(SecretRef {
        name: "flux-git".into(),
        username_env: "GIT_USER".into(),
        password_env: "GIT_TOKEN".into(),
    });
    let env = Env::from_pairs([("GIT_USER", "bot"), ("GIT_TOKEN", "s3cret")]);
    let creds = flux::credentials(&f, &env).unwrap();
    c.apply(&flux::sync_objects(&f, creds.as_ref()))
        .await
        .unwrap();

    let bodies: Vec<serde_json::Value> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[0],
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "flux-git", "namespace": "flux-system"}, "type": "Opaque",
               "data": {"username": "Ym90", "password": "czNjcmV0"}})
    );
    assert_eq!(
        bodies[1],
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "flux-system", "namespace": "flux-system"},
               "spec": {"interval": "1m", "ref": {"branch": "main"}, "url": "https://github.com/macula-io/macula-gitops.git", "secretRef": {"name": "flux-git"}}})
    );
    assert_eq!(
        bodies[2],
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "flux-system", "namespace": "flux-system"},
               "spec": {"interval": "10m", "path": "./clusters/macula-dev", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}})
    );
    let observed = c.observe_flux().await.unwrap().sync.unwrap();
    assert_eq!(observed, SyncObserved::desired(&f));

    // Status: the Ready condition and revision Flux's controller would report.
    s.set_status(
        "kustomize.toolkit.fluxcd.io/v1/kustomizations/flux-system/flux-system",
        json!({"lastAppliedRevision": "main@sha1:0123abcd", "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied revision: main@sha1:0123abcd"}]}),
    );
    let ks = c.kustomizations().await.unwrap();
    assert_eq!(ks.len(), 1);
    assert_eq!(
        (
            ks[0].name.as_str(),
            ks[0].ready.as_str(),
            ks[0].revision.as_deref()
        ),
        ("flux-system", "True", Some("main@sha1:0123abcd"))
    );
}

#[tokio::test]
async fn missing_credentials_are_named() {
    let mut f = resolved(&"0".repeat(64));
    f.secret_ref = Some(SecretRef {
        name: "flux-git".into(),
        username_env: "GIT_USER".into(),
        password_env: "GIT_TOKEN".into(),
    });
    let e = flux::credentials(&f, &Env::from_pairs([("GIT_USER", "bot")])).unwrap_err();
    assert_eq!(
        e,
        "flux.secret_ref: environment variable GIT_TOKEN is not set"
    );
}
