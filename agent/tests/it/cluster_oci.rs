//! The local loop, `flux.source: oci`: the cluster's directory of the applied revision goes to
//! Debian's real `docker-registry` as the artifact `flux push artifact` makes, read back through
//! the registry's API (media types, digests, annotations, the tarball's entries); Flux's
//! OCIRepository and Kustomization go to the stand-in API server, which checks them against the
//! real CRD schemas. An unchanged directory is not pushed again; a changed one is; a symlink
//! refuses the revision before anything changes.

use crate::support::cluster as support;

use std::io::Read;
use std::path::Path;

use crate::support::docker::Sandbox;
use macula_gitops::cluster::oci::{
    self, Provenance, CONFIG_MEDIA_TYPE, CONTENT_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
};
use macula_gitops::cluster::{apply, run, ResolvedClusters};
use macula_gitops::desired::{interpolate::Env, load_desired};
use macula_gitops::diag::Diagnostic;
use support::registry::DockerRegistry;
use support::OneCluster;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A repo whose default host runs cluster `cluster` with an oci source, pushing to the
/// registry at `registry` (served by container `registry_container` on the host stacks' side).
fn repo(cluster: &str, registry: &str, registry_container: &str, image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let (fixture, sha) = support::flux_fixture();
    let port = registry.rsplit(':').next().unwrap();
    write(r, "desired-state/hosts.yaml", &format!("profiles:\n  dev: {{stacks: [infrastructure], clusters: [{cluster}]}}\nhosts:\n  default: {{profile: dev}}\n"));
    write(r, "desired-state/stacks/infrastructure/compose.yaml", &format!("services:\n  registry:\n    image: registry:2\n    container_name: {registry_container}\n    ports: ['127.0.0.1:{port}:5000']\n"));
    write(r, "desired-state/clusters.yaml", &format!(
        "registry: {{service: infrastructure/registry, host: '{registry}', cluster: 'kind-registry:5000'}}\n\
         flux: {{version: v2.4.0, install_url: 'file://{}', sha256: '{sha}', source: oci}}\n\
         clusters:\n  {cluster}: {{image: '{image}', nodes: [{{role: control-plane}}]}}\n",
        fixture.display()
    ));
    write(
        r,
        "desired-state/.env",
        "PDNS_API_KEY=never-in-an-artifact\n",
    );
    let c = format!("clusters/{cluster}");
    write(
        r,
        &format!("{c}/kustomization.yaml"),
        "resources: [apps.yaml, ../../base/web]\n",
    );
    write(r, &format!("{c}/apps.yaml"), &format!("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: apps, namespace: flux-system}}\nspec:\n  interval: 1m\n  path: ./{c}/apps\n  prune: true\n  sourceRef: {{kind: OCIRepository, name: flux-system}}\n"));
    write(r, &format!("{c}/.git/HEAD"), "ref: refs/heads/main\n");
    write(
        r,
        "base/web/kustomization.yaml",
        "resources: [deploy.yaml]\n",
    );
    write(
        r,
        "base/web/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    );
    write(r, "base/unused/x.yaml", "kind: ConfigMap\n");
    write(r, "clusters/other/kustomization.yaml", "resources: []\n");
    dir
}

/// `validate`'s view: the host's desired state and its clusters, every problem at once.
fn load(repo: &Path) -> Result<ResolvedClusters, Vec<Diagnostic>> {
    let root = repo.join("desired-state");
    let env = Env::default();
    let state = load_desired(&root, "dev", &env).unwrap_or_else(|d| panic!("{d:?}"));
    run::load_for_host(&state, &env, None).map(|c| c.expect("clusters.yaml exists"))
}

fn sha256(data: &[u8]) -> String {
    oci::pack::sha256(data)
}

fn commit(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

/// Entry names and the text of each file in a gzipped tarball.
fn untar(layer: &[u8]) -> Vec<(String, String)> {
    let mut t = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    t.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            (name, text)
        })
        .collect()
}

#[tokio::test]
async fn oci_source_pushes_the_cluster_directory_as_flux_push_artifact_does() {
    let Some(reg) = DockerRegistry::start() else {
        println!("skipped: /usr/bin/docker-registry not installed");
        return;
    };
    let mut g = Sandbox::new().await;
    let net = g.network("kind").await;
    let registry_container = support::httpd(&mut g, "registry", 5000).await;
    let cl = format!("{}-dev", g.id);
    support::control_plane(&mut g, "dev", &cl, &net).await;
    let image = crate::support::image::busybox();
    let repo = repo(&cl, &reg.addr, &registry_container, image);
    let resolved = load(repo.path()).unwrap_or_else(|d| panic!("{d:#?}"));
    let artifact = resolved.clusters[0].artifact.clone().expect("packed");
    let c = format!("clusters/{cl}");
    assert_eq!(
        artifact.files,
        [
            "base/web/deploy.yaml".to_string(),
            "base/web/kustomization.yaml".into(),
            format!("{c}/apps.yaml"),
            format!("{c}/kustomization.yaml"),
        ]
    );

    let one = OneCluster::start(&cl, &net).await;
    let mut opts = one.opts.clone();
    opts.provenance = Provenance {
        source: Some("https://git.example/macula-gitops.git".into()),
        reference: Some("main".into()),
        commit: Some(commit(1)),
    };
    let (desired, wiring) = resolved.desired(false, &net);
    let (steps, _) = apply::diff(&one.kind, &one.engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    let push_line = format!(
        "+ cluster {cl}: push artifact {}/{c}:latest {} (4 files)",
        reg.addr,
        artifact.short_digest()
    );
    let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert!(lines.contains(&push_line), "{lines:#?}");

    let report = apply::apply(&one.kind, &one.engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(report.failed, 0, "{report:#?}");
    let done: Vec<String> = report.done.iter().map(ToString::to_string).collect();
    assert!(done.contains(&push_line), "{report:#?}");

    // The manifest, as the registry serves it.
    let m = reg.get(&format!("{c}/manifests/latest"), MANIFEST_MEDIA_TYPE);
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    let manifest = m.json();
    assert_eq!(
        m.header("docker-content-digest"),
        Some(sha256(&m.body).as_str())
    );
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], CONTENT_MEDIA_TYPE);
    assert_eq!(layers[0]["digest"], artifact.digest.as_str());
    let a = &manifest["annotations"];
    assert_eq!(
        a["org.opencontainers.image.revision"],
        format!("main@sha1:{}", commit(1)).as_str()
    );
    assert_eq!(
        a["org.opencontainers.image.source"],
        "https://git.example/macula-gitops.git"
    );
    let created = a["org.opencontainers.image.created"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    // A tag per revision plus the moving tag, both the same manifest.
    assert_eq!(reg.tags(&c), [commit(1), "latest".into()]);
    let by_revision = reg.get(&format!("{c}/manifests/{}", commit(1)), MANIFEST_MEDIA_TYPE);
    assert_eq!(
        by_revision.header("docker-content-digest"),
        m.header("docker-content-digest")
    );

    // The blobs, read back: digests match, the layer holds exactly the cluster directory and
    // what its kustomizations reference (no .git, no other cluster, no desired-state).
    let config = reg.get(
        &format!(
            "{c}/blobs/{}",
            manifest["config"]["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    assert_eq!(config.status, 200);
    assert_eq!(
        sha256(&config.body),
        manifest["config"]["digest"].as_str().unwrap()
    );
    assert_eq!(
        config.json()["rootfs"]["diff_ids"][0],
        artifact.diff_id.as_str()
    );
    let layer = reg.get(&format!("{c}/blobs/{}", artifact.digest), "*/*");
    assert_eq!(sha256(&layer.body), artifact.digest);
    assert_eq!(layers[0]["size"], layer.body.len());
    let entries = untar(&layer.body);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "base/web",
            "base/web/deploy.yaml",
            "base/web/kustomization.yaml",
            "clusters",
            c.as_str(),
            &format!("{c}/apps.yaml"),
            &format!("{c}/kustomization.yaml"),
        ]
    );
    assert_eq!(
        entries[2].1,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    );

    // Flux follows it: the OCIRepository (checked by the stand-in against the real CRD schema,
    // 422 otherwise) and the Kustomization reading it at the same repo path.
    let source = one
        .api
        .object("source.toolkit.fluxcd.io/v1/ocirepositories/flux-system/flux-system")
        .expect("OCIRepository applied");
    assert_eq!(
        source["spec"],
        serde_json::json!({"interval": "1m", "url": format!("oci://kind-registry:5000/{c}"), "ref": {"tag": "latest"}, "insecure": true})
    );
    let ks = one
        .api
        .object("kustomize.toolkit.fluxcd.io/v1/kustomizations/flux-system/flux-system")
        .unwrap();
    assert_eq!(
        ks["spec"]["sourceRef"],
        serde_json::json!({"kind": "OCIRepository", "name": "flux-system"})
    );
    assert_eq!(ks["spec"]["path"], format!("./{c}"));

    // A new commit that leaves the directory as it was: nothing is pushed, nothing applied.
    opts.provenance.commit = Some(commit(2));
    let resolved = load(repo.path()).unwrap();
    let (desired, wiring) = resolved.desired(false, &net);
    let report = apply::apply(&one.kind, &one.engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(
        (report.tried, report.failed, report.changed),
        (0, 0, 0),
        "{report:#?}"
    );
    assert_eq!(reg.tags(&c), [commit(1), "latest".into()]);

    // A commit that changes a referenced file: a new layer under the new revision's tag and
    // the moving tag.
    write(
        repo.path(),
        "base/web/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web2}\n",
    );
    opts.provenance.commit = Some(commit(3));
    let resolved = load(repo.path()).unwrap();
    let changed = resolved.clusters[0].artifact.clone().unwrap();
    assert_ne!(changed.digest, artifact.digest);
    let (desired, wiring) = resolved.desired(false, &net);
    let report = apply::apply(&one.kind, &one.engine, &desired, wiring.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(
        report
            .done
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [format!(
            "~ cluster {cl}: push artifact {}/{c}:latest {} → {} (4 files)",
            reg.addr,
            artifact.short_digest(),
            changed.short_digest()
        )],
        "{report:#?}"
    );
    assert_eq!(reg.tags(&c), [commit(1), commit(3), "latest".into()]);
    let m = reg
        .get(&format!("{c}/manifests/latest"), MANIFEST_MEDIA_TYPE)
        .json();
    assert_eq!(m["layers"][0]["digest"], changed.digest.as_str());
    assert_eq!(
        m["annotations"]["org.opencontainers.image.revision"],
        format!("main@sha1:{}", commit(3)).as_str()
    );

    // The CRD schema is enforced for OCIRepository as the API server enforces it.
    let mut bad = macula_gitops::cluster::flux::sync_objects(&desired.clusters[0].flux)[0].clone();
    bad["spec"]["url"] = "http://kind-registry:5000/x".into();
    let (code, body) = one.api.apply_as("test", true, &bad).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("^oci://.*$"), "{body}");
}

#[test]
fn a_symlink_in_the_cluster_directory_refuses_the_revision() {
    let repo = repo("dev", "127.0.0.1:5999", "registry", "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed");
    std::os::unix::fs::symlink("/etc/hostname", repo.path().join("clusters/dev/host.yaml"))
        .unwrap();
    let errs: Vec<String> = load(repo.path())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["clusters/dev/host.yaml: is a symbolic link; an oci artifact holds only files and directories (symlinks are refused like everywhere in the repo) (clusters.dev.flux.source is oci: ./clusters/dev is packed as its artifact)"]
    );
    // A kustomization that reaches out of the repo is refused the same way.
    std::fs::remove_file(repo.path().join("clusters/dev/host.yaml")).unwrap();
    write(
        repo.path(),
        "clusters/dev/kustomization.yaml",
        "resources: [../../../elsewhere]\n",
    );
    let errs = load(repo.path()).unwrap_err();
    assert_eq!(errs[0].file, Path::new("clusters/dev/kustomization.yaml"));
    assert!(
        errs[0]
            .message
            .starts_with("\"../../../elsewhere\" points outside the repo"),
        "{errs:?}"
    );
}
