//! A Flux upgrade through whole passes (node container on the real engine, stand-in API
//! server): the new version is installed and rolled out, then what the old manifest applied
//! and the new one dropped is removed — except a Namespace or CRD, which would take their
//! contents with them — and the state file records the new inventory.

use crate::support::cluster as support;
use crate::support::docker::Sandbox;

use macula_gitops::cluster::apply;
use macula_gitops::cluster::flux::sha256_hex;
use macula_gitops::cluster::release;
use macula_gitops::desired::catalog::Catalog;

/// The fixture as release `version`, without the documents for which `drop` is true.
fn manifest(dir: &std::path::Path, version: &str, drop: &dyn Fn(&str) -> bool) -> (String, String) {
    let (fixture, _) = support::flux_fixture();
    let text = std::fs::read_to_string(fixture).unwrap();
    let kept: Vec<&str> = text.split("\n---\n").filter(|d| !drop(d)).collect();
    let text = kept.join("\n---\n").replace("v2.4.0", version);
    let path = dir.join(format!("install-{version}.yaml"));
    std::fs::write(&path, &text).unwrap();
    (
        format!("file://{}", path.display()),
        sha256_hex(text.as_bytes()),
    )
}

#[tokio::test]
async fn upgrade_removes_what_the_new_version_dropped() {
    let mut g = Sandbox::new().await;
    let net = g.network("kind").await;
    let name = format!("{}-dev", g.id);
    support::control_plane(&mut g, "dev", &name, &net).await;
    let files = tempfile::tempdir().unwrap();
    let (old_url, old_sha) = manifest(files.path(), "v2.8.0", &|_| false);
    // The new version ships no kustomize-controller ServiceAccount and no Kustomization CRD.
    let (new_url, new_sha) = manifest(files.path(), "v2.9.5", &|d| {
        d.contains("kind: ServiceAccount\nmetadata:\n  name: kustomize-controller")
            || d.contains("name: kustomizations.kustomize.toolkit.fluxcd.io")
    });
    let text = |url: &str, sha: &str, version: &str| {
        format!(
            "flux: {{version: {version}, install_url: '{url}', sha256: '{sha}', git_url: 'https://github.com/macula-io/macula-gitops.git'}}\n\
             clusters:\n  {name}: {{image: 'x', nodes: [{{role: control-plane}}], flux: {{path: ./clusters/dev}}}}\n"
        )
    };
    let one = support::OneCluster::start(&name, &net).await;
    let (api, kind, engine, state, opts) =
        (&one.api, &one.kind, &one.engine, &one.state, &one.opts);
    let selected = [name.clone()];
    let sa = "/v1/serviceaccounts/flux-system/kustomize-controller";
    let crd = "apiextensions.k8s.io/v1/customresourcedefinitions//kustomizations.kustomize.toolkit.fluxcd.io";

    let (old, _) = support::desired(
        &text(&old_url, &old_sha, "v2.8.0"),
        &Catalog::default(),
        &selected,
        &net,
    );
    let r = support::apply_once(kind, engine, &old, None, opts).await;
    assert_eq!(r.failed, 0, "{r:#?}");
    let installed = release::read_installed(state.path(), &name).unwrap();
    assert_eq!(
        (installed.version.as_str(), installed.sha256.as_str()),
        ("v2.8.0", old_sha.as_str())
    );
    assert_eq!(installed.inventory.len(), 9, "{:#?}", installed.inventory);
    assert!(api.object(sa).is_some());

    let (new, _) = support::desired(
        &text(&new_url, &new_sha, "v2.9.5"),
        &Catalog::default(),
        &selected,
        &net,
    );
    let (steps, _) = apply::diff(kind, engine, &new, None, opts).await.unwrap();
    assert!(
        steps.iter().any(|s| s.to_string().starts_with(&format!(
            "~ cluster {name}: upgrade flux v2.8.0 → v2.9.5 (sha256 pinned"
        ))),
        "{steps:#?}"
    );
    let r = support::apply_once(kind, engine, &new, None, opts).await;
    assert_eq!(r.failed, 0, "{r:#?}");
    assert!(api.object(sa).is_none(), "dropped ServiceAccount removed");
    assert!(
        api.object(crd).is_some(),
        "a dropped CRD stays (it would delete its objects)"
    );
    assert!(api
        .object("apps/v1/deployments/flux-system/kustomize-controller")
        .is_some());
    let installed = release::read_installed(state.path(), &name).unwrap();
    assert_eq!(
        (installed.version.as_str(), installed.inventory.len()),
        ("v2.9.5", 7)
    );
    let ns = api.object("/v1/namespaces//flux-system").unwrap();
    assert_eq!(
        ns["metadata"]["annotations"]["gitops.macula.io/flux-install-version"],
        "v2.9.5"
    );
}
