//! Flux bootstrap through kube-rs against the stand-in API server: what the agent sends, in
//! which order, and that a converged cluster gets nothing.

use crate::support::cluster as support;

use std::time::Duration;

use macula_gitops::cluster::file::{FluxResolved, SecretRef};
use macula_gitops::cluster::flux::{self, INSTALL_ANNOTATION};
use macula_gitops::cluster::kube_ops::{FluxBootstrap, InstallMark, KubeCluster};
use macula_gitops::cluster::plan::SyncObserved;
use macula_gitops::cluster::secrets::DesiredSecret;
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
        source: Default::default(),
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
async fn tls_with_client_certificates_like_a_kind_kubeconfig() {
    let s = StandIn::start_tls().await;
    assert!(s.url.starts_with("https://127.0.0.1:"));
    let c = client(&s).await;
    let sha = support::install_fixture(&c, "v2.4.0").await;
    assert_eq!(
        c.observe_flux().await.unwrap().install_sha256.as_deref(),
        Some(sha.as_str())
    );
    // Without the client certificate the server does not talk to the agent at all.
    let anonymous: String = s
        .kubeconfig("macula-dev")
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| {
            if l.trim() == "user:" {
                "  user: {}".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = KubeCluster::from_kubeconfig("macula-dev", &anonymous)
        .await
        .unwrap();
    let before = s.requests().len();
    let err = c.observe_flux().await.unwrap_err();
    assert!(matches!(err, ClusterError::Kube { .. }), "{err}");
    assert_eq!(
        s.requests().len(),
        before,
        "the refused client reached no handler"
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
    let sha = support::install_fixture(&c, "v2.4.0").await;
    s.clear_requests();

    let mut f = resolved(&sha);
    f.secret_ref = Some(https_ref());
    let env = Env::from_pairs([("GIT_USER", "bot"), ("GIT_TOKEN", "s3cret")]);
    let mut secret = DesiredSecret::for_git(f.secret_ref.as_ref().unwrap(), &f.git_url).unwrap();
    assert!(secret.read(&env).is_empty());
    c.apply(&secret.objects().unwrap()).await.unwrap();
    c.apply(&flux::sync_objects(&f)).await.unwrap();

    let bodies: Vec<serde_json::Value> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body.unwrap())
        .collect();
    // No bare Namespace for flux-system: it would strip the install's labels and annotations.
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[0],
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "flux-git", "namespace": "flux-system", "labels": {"app.kubernetes.io/managed-by": "macula-gitops"}}, "type": "Opaque",
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

fn https_ref() -> SecretRef {
    SecretRef {
        name: "flux-git".into(),
        username_env: Some("GIT_USER".into()),
        password_env: Some("GIT_TOKEN".into()),
        identity_file_env: None,
        known_hosts_file_env: None,
    }
}

#[tokio::test]
async fn missing_credentials_are_named() {
    let mut secret = DesiredSecret::for_git(
        &https_ref(),
        "https://github.com/macula-io/macula-gitops.git",
    )
    .unwrap();
    let problems = secret.read(&Env::from_pairs([("GIT_USER", "bot")]));
    assert_eq!(
        problems,
        [(
            "password".to_string(),
            "environment variable GIT_TOKEN is not set (the agent reads the value from its environment)"
                .to_string()
        )]
    );
    assert!(secret.objects().is_none());
    // An ssh:// URL needs the key files, which an http(s) secret_ref does not name.
    assert_eq!(
        DesiredSecret::for_git(
            &https_ref(),
            "ssh://git@github.com/macula-io/macula-gitops.git"
        )
        .unwrap_err(),
        "needs identity_file_env and known_hosts_file_env (for an ssh:// git_url)"
    );
}

#[tokio::test]
async fn ssh_source_gets_identity_and_known_hosts_from_host_files() {
    let dir = tempfile::tempdir().unwrap();
    let (key, hosts) = (
        dir.path().join("id_ed25519"),
        dir.path().join("known_hosts"),
    );
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n").unwrap();
    std::fs::write(&hosts, "github.com ssh-ed25519 AAAAC3Nza\n").unwrap();
    let r = SecretRef {
        name: "flux-ssh".into(),
        username_env: None,
        password_env: None,
        identity_file_env: Some("FLUX_SSH_KEY_FILE".into()),
        known_hosts_file_env: Some("FLUX_KNOWN_HOSTS_FILE".into()),
    };
    let mut secret =
        DesiredSecret::for_git(&r, "ssh://git@github.com/macula-io/macula-gitops.git").unwrap();
    let env = Env::from_pairs([
        ("FLUX_SSH_KEY_FILE", key.to_str().unwrap()),
        ("FLUX_KNOWN_HOSTS_FILE", hosts.to_str().unwrap()),
    ]);
    assert!(secret.read(&env).is_empty());
    assert_eq!(
        secret.describe(),
        "flux-system/flux-ssh (identity ← file $FLUX_SSH_KEY_FILE, known_hosts ← file $FLUX_KNOWN_HOSTS_FILE)"
    );
    let s = StandIn::start().await;
    let c = client(&s).await;
    c.apply(&secret.objects().unwrap()).await.unwrap();
    let stored = s.object("/v1/secrets/flux-system/flux-ssh").unwrap();
    assert_eq!(
        stored["data"]["identity"],
        flux::base64(&std::fs::read(&key).unwrap())
    );
    assert_eq!(
        stored["data"]["known_hosts"],
        flux::base64(&std::fs::read(&hosts).unwrap())
    );
    assert!(secret.matches(Some(&stored)));
    // A rotated key on the host: the Secret no longer matches, so the next pass re-applies it.
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nrotated\n").unwrap();
    assert!(secret.read(&env).is_empty());
    assert!(!secret.matches(Some(&stored)));
    // A file the host does not have is named with the variable that points at it.
    let missing = Env::from_pairs([
        ("FLUX_SSH_KEY_FILE", "/nonexistent/id"),
        ("FLUX_KNOWN_HOSTS_FILE", hosts.to_str().unwrap()),
    ]);
    let problems = secret.read(&missing);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .1
            .starts_with("$FLUX_SSH_KEY_FILE: /nonexistent/id: "),
        "{problems:?}"
    );
}
