//! The agent and Flux never fight over the sync objects. Against the stand-in API server with
//! server-side apply per field manager and the real Flux CRD schemas: the agent applies the
//! sync objects it derives from the repo's own `clusters.yaml`, kustomize-controller (a second
//! manager, forcing, as Flux does) applies the repo's own `gotk-sync.yaml`, and neither the
//! next agent pass nor Flux's next apply writes anything. With the values that used to differ
//! (the Kustomization interval) the same two applies conflict (409) or, forced, flip the value
//! back and forth — what `validate` now refuses. And the CRD schema refuses what the real API
//! server refuses.

use crate::support::cluster as support;

use std::path::Path;
use std::time::Duration;

use macula_gitops::cluster::flux::{self, sync_objects};
use macula_gitops::cluster::kube_ops::{FluxBootstrap, InstallMark, KubeCluster};
use macula_gitops::cluster::plan::SyncObserved;
use macula_gitops::cluster::run;
use macula_gitops::desired::{interpolate::Env, load_desired};
use serde_json::{json, Value};
use support::standin_apiserver::StandIn;

const FLUX: &str = "kustomize-controller";
const GIT: &str = "source.toolkit.fluxcd.io/v1/gitrepositories/flux-system/flux-system";
const KS: &str = "kustomize.toolkit.fluxcd.io/v1/kustomizations/flux-system/flux-system";

/// The repo's own macula-dev Flux settings, resolved as `validate` resolves them.
fn repo_flux() -> macula_gitops::cluster::file::FluxResolved {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../desired-state");
    let env = Env::load(Some(&root.join(".env.example"))).unwrap();
    let state = load_desired(&root, "dev", &env).unwrap();
    let resolved = run::load_for_host(&state, &env, None)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .unwrap();
    resolved
        .clusters
        .into_iter()
        .find(|c| c.name == "macula-dev")
        .unwrap()
        .flux
}

fn repo_gotk_sync() -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../clusters/macula-dev/flux-system/gotk-sync.yaml");
    flux::parse_manifests("gotk-sync.yaml", &std::fs::read_to_string(p).unwrap()).unwrap()
}

async fn installed() -> (StandIn, KubeCluster) {
    let s = StandIn::start().await;
    let mut c = KubeCluster::from_kubeconfig("macula-dev", &s.kubeconfig("macula-dev"))
        .await
        .unwrap();
    c.poll = Duration::from_millis(20);
    let (path, sha) = support::flux_fixture();
    let objects =
        flux::parse_manifests("fixture", &std::fs::read_to_string(path).unwrap()).unwrap();
    let mark = InstallMark {
        version: "v2.9.5".into(),
        sha256: sha,
    };
    c.install(&objects, &mark, Duration::from_secs(10))
        .await
        .unwrap();
    (s, c)
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn agent_and_flux_share_the_sync_objects_and_stop_writing() {
    let (s, c) = installed().await;
    let flux = repo_flux();
    c.apply(&sync_objects(&flux)).await.unwrap();
    // Flux reconciles clusters/macula-dev, which holds flux-system/gotk-sync.yaml.
    for doc in repo_gotk_sync() {
        let (code, body) = s.apply_as(FLUX, true, &doc).await;
        assert_eq!(code, 200, "{body}");
    }
    for key in [GIT, KS] {
        let o = s.object(key).unwrap();
        assert_eq!(
            managers(&o),
            ["kustomize-controller", "macula-gitops"],
            "{key}"
        );
        // Both own spec.interval: same value, shared, no conflict.
        for m in o["metadata"]["managedFields"].as_array().unwrap() {
            assert!(m["fieldsV1"]["f:spec"]["f:interval"].is_object(), "{m}");
        }
    }

    // The next agent pass: the sync objects read back as desired, so nothing is planned;
    // applying them anyway (and Flux's next reconcile) writes nothing.
    assert_eq!(
        c.observe_flux().await.unwrap().sync,
        Some(SyncObserved::desired(&flux))
    );
    let (writes, rv) = (
        s.writes(),
        s.object(KS).unwrap()["metadata"]["resourceVersion"].clone(),
    );
    c.apply(&sync_objects(&flux)).await.unwrap();
    for doc in repo_gotk_sync() {
        s.apply_as(FLUX, true, &doc).await;
    }
    assert_eq!(s.writes(), writes, "no write by either manager");
    assert_eq!(s.object(KS).unwrap()["metadata"]["resourceVersion"], rv);
}

#[tokio::test]
async fn different_values_are_a_conflict_or_a_tug_of_war() {
    let (s, c) = installed().await;
    // What the agent applied before this repo's settings were unified: 10m against the
    // file's 1m.
    let mut flux = repo_flux();
    flux.sync_interval = "10m".into();
    c.apply(&sync_objects(&flux)).await.unwrap();
    let ks = repo_gotk_sync()
        .into_iter()
        .find(|d| d["kind"] == "Kustomization")
        .unwrap();
    let (code, body) = s.apply_as(FLUX, false, &ks).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        "Apply failed with 1 conflict: conflict with \"macula-gitops\": .spec.interval"
    );
    // Forced, as Flux applies: every pass flips the value, and so does the agent's.
    let mut seen = Vec::new();
    for _ in 0..2 {
        s.apply_as(FLUX, true, &ks).await;
        seen.push(s.object(KS).unwrap()["spec"]["interval"].clone());
        c.apply(&sync_objects(&flux)).await.unwrap();
        seen.push(s.object(KS).unwrap()["spec"]["interval"].clone());
    }
    assert_eq!(seen, [json!("1m"), json!("10m"), json!("1m"), json!("10m")]);
}

#[tokio::test]
async fn crd_schemas_refuse_what_the_api_server_refuses() {
    let (s, _c) = installed().await;
    let mut git = repo_gotk_sync()
        .into_iter()
        .find(|d| d["kind"] == "GitRepository")
        .unwrap();
    git["spec"]["url"] = json!("git@github.com:macula-io/macula-gitops.git");
    git["spec"]["provider"] = json!("gitlab");
    let (code, body) = s.apply_as(FLUX, true, &git).await;
    assert_eq!(code, 422, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"spec.url: Invalid value: "git@github.com:macula-io/macula-gitops.git": should match '^(http|https|ssh)://.*$'"#),
        "{msg}"
    );
    assert!(
        msg.contains(r#"spec.provider: Unsupported value: "gitlab""#),
        "{msg}"
    );
    let mut ks = repo_gotk_sync()
        .into_iter()
        .find(|d| d["kind"] == "Kustomization")
        .unwrap();
    ks["spec"].as_object_mut().unwrap().remove("sourceRef");
    let (code, body) = s.apply_as(FLUX, true, &ks).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.sourceRef: Required value"),
        "{body}"
    );
    assert!(
        s.object(KS).is_none() && s.object(GIT).is_none(),
        "nothing stored"
    );
}
