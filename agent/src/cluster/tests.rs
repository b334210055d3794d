//! Table tests for loading, validation, the kind config and the pure plan.

use std::path::Path;

use crate::desired::catalog::{Catalog, Protocol, ServiceRef};
use crate::input::Env;

use super::file::*;
use super::kindconfig;
use super::plan::*;
use crate::diag::Diagnostics;

/// The cross-file problems `resolve` reports for a host selecting `selected`.
fn validate(f: &ClustersFile, catalog: &Catalog, selected: &[String]) -> Diagnostics {
    super::resolve(f, catalog, selected, None).1
}

const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const OTHER: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn file_text() -> String {
    format!(
        r#"
registry:
  service: infrastructure/registry
  host: localhost:5001
  cluster: kind-registry:5000
flux:
  version: v2.4.0
  install_url: https://github.com/fluxcd/flux2/releases/download/v2.4.0/install.yaml
  sha256: "{SHA}"
  git_url: ${{GIT_URL}}
  branch: main
  interval: 1m
clusters:
  macula-dev:
    image: kindest/node:v1.31.0
    recreate: false
    nodes:
      - role: control-plane
        extraPortMappings:
          - {{containerPort: 80, hostPort: 8080, protocol: TCP}}
          - {{containerPort: 4433, hostPort: 4433, protocol: UDP}}
    flux: {{path: ./clusters/macula-dev}}
  macula-hub:
    image: kindest/node:v1.31.0
    nodes:
      - role: control-plane
        extraPortMappings:
          - {{containerPort: 30000, hostPort: 30000}}
      - role: worker
    flux: {{branch: hub}}
"#
    )
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for c in ["macula-dev", "macula-hub"] {
        std::fs::create_dir_all(dir.path().join("clusters").join(c)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("desired-state")).unwrap();
    dir
}

fn env() -> Env {
    Env::from_pairs([("GIT_URL", "https://github.com/macula-io/macula-gitops.git")])
}

fn load_text(repo: &Path, text: &str) -> (Option<ClustersFile>, Vec<String>) {
    let path = repo.join("desired-state/clusters.yaml");
    std::fs::write(&path, text).unwrap();
    let (f, d) = load(&path, &env(), repo);
    // Errors only: the tag-only node images of these texts warn (tested on their own).
    let msgs = d
        .into_sorted()
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}:{}: {}", d.line.unwrap_or(0), d.path, d.message))
        .collect();
    (f, msgs)
}

#[test]
fn node_images_pinned_by_tag_only_warn() {
    let r = repo();
    let path = r.path().join("desired-state/clusters.yaml");
    let pinned = "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed";
    let text = file_text().replacen("kindest/node:v1.31.0", pinned, 1);
    std::fs::write(&path, text).unwrap();
    let (_, d) = load(&path, &env(), r.path());
    let warnings: Vec<String> = d
        .into_sorted()
        .iter()
        .map(|d| {
            format!(
                "{} {}:{}: {}",
                d.severity,
                d.line.unwrap_or(0),
                d.path,
                d.message
            )
        })
        .collect();
    assert_eq!(
        warnings,
        ["warning 26:clusters.macula-hub.nodes[0].image: kindest/node:v1.31.0 is pinned by tag only; use the @sha256: digest kind's release notes list for it",
         "warning 29:clusters.macula-hub.nodes[1].image: kindest/node:v1.31.0 is pinned by tag only; use the @sha256: digest kind's release notes list for it"]
    );
}

fn catalog() -> Catalog {
    Catalog {
        services: vec![ServiceRef {
            stack: "infrastructure".into(),
            service: "registry".into(),
            container_name: "kind-registry".into(),
            containers: vec!["kind-registry".into()],
            networks: vec!["macula-infra".into()],
            container_ports: vec![(5000, Protocol::Tcp)],
            published: vec![(Some("127.0.0.1".parse().unwrap()), 5001, Protocol::Tcp)],
        }],
    }
}

#[test]
fn loads_the_binding_format() {
    let r = repo();
    let (f, errs) = load_text(r.path(), &file_text());
    assert_eq!(errs, Vec::<String>::new());
    let f = f.unwrap();
    let dev = &f.clusters["macula-dev"];
    assert_eq!(
        dev.nodes[0].extra_port_mappings[1].protocol,
        PortProtocol::Udp
    );
    let flux = f.flux_for("macula-hub", None).unwrap();
    assert_eq!(
        flux.git_url,
        "https://github.com/macula-io/macula-gitops.git"
    );
    assert_eq!(
        (flux.branch.as_str(), flux.path.as_str()),
        ("hub", "./clusters/macula-hub")
    );
    assert_eq!(
        (flux.interval.as_str(), flux.sync_interval.as_str()),
        ("1m", "10m")
    );
    let d = validate(&f, &catalog(), &["macula-dev".into(), "macula-hub".into()]);
    assert!(d.is_empty(), "{d}");
}

#[test]
fn all_errors_at_once_with_lines() {
    let r = repo();
    std::os::unix::fs::symlink("/tmp", r.path().join("clusters/escape")).unwrap();
    let text = file_text()
        .replace("version: v2.4.0", "version: 2.4")
        .replace(SHA, "ABC")
        .replace("interval: 1m", "interval: soon\n  colour: blue")
        .replace(
            "flux: {path: ./clusters/macula-dev}",
            "flux: {path: ../elsewhere}",
        )
        .replace(
            "flux: {branch: hub}",
            "flux: {branch: hub, path: ./clusters/escape}",
        )
        .replace(
            "      - role: worker",
            "      - role: worker\n        labels: {a: b}",
        );
    let (_, errs) = load_text(r.path(), &text);
    let want = [
        "9:flux.sha256: must be 64 lowercase hex digits (the sha256 of install.yaml)",
        "12:flux.interval: \"soon\" is not a duration like 1m or 10m30s",
        "13:flux.colour: unknown key \"colour\" (supported: version, install_url, sha256, git_url, branch, interval, sync_interval, path, secret_ref, source)",
        "23:clusters.macula-dev.flux.path: \"../elsewhere\" must not contain `..`",
        "31:clusters.macula-hub.nodes[1].labels: unknown key \"labels\" (supported: role, image, extraPortMappings)",
        "7:flux.version: \"2.4\" is not a version like v2.4.0",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
    }
    assert!(
        errs.iter().any(|e| e.starts_with(
            "32:clusters.macula-hub.flux.path: \"./clusters/escape\" resolves outside the repo"
        )),
        "{errs:#?}"
    );
}

#[test]
fn placeholder_digests_are_refused_and_a_missing_pin_is_fine() {
    let r = repo();
    for fake in ["0".repeat(64), "0123456789abcdef".repeat(4)] {
        let (_, errs) = load_text(r.path(), &file_text().replace(SHA, &fake));
        assert_eq!(
            errs,
            ["9:flux.sha256: is a placeholder, not the sha256 of a manifest; remove it (the release's checksums file is then used) or pin the value `macula-gitops flux digest <version>` prints"],
            "{fake}"
        );
    }
    let text = file_text()
        .replace(&format!("  sha256: \"{SHA}\"\n"), "")
        .replace(
        "  install_url: https://github.com/fluxcd/flux2/releases/download/v2.4.0/install.yaml\n",
        "",
    );
    let (f, errs) = load_text(r.path(), &text);
    assert!(errs.is_empty(), "{errs:?}");
    let flux = f.unwrap().flux_for("macula-dev", None).unwrap();
    assert_eq!(flux.sha256, None);
    let rel = super::release::Release::of(&flux);
    assert_eq!(
        (rel.install_url.as_str(), rel.checksums_url.as_str()),
        (
            "https://github.com/fluxcd/flux2/releases/download/v2.4.0/install.yaml",
            "https://github.com/fluxcd/flux2/releases/download/v2.4.0/flux_2.4.0_checksums.txt"
        )
    );
}

#[test]
fn scp_style_git_url_is_refused_with_the_ssh_form() {
    let r = repo();
    let text = file_text().replace(
        "git_url: ${GIT_URL}",
        "git_url: git@github.com:macula-io/macula-gitops.git",
    );
    let (_, errs) = load_text(r.path(), &text);
    assert_eq!(
        errs,
        ["10:flux.git_url: \"git@github.com:macula-io/macula-gitops.git\" is an scp-style address, which Flux's GitRepository does not accept: use ssh://git@github.com/macula-io/macula-gitops.git"]
    );
}

#[test]
fn secret_ref_must_fit_the_git_url_scheme() {
    let r = repo();
    let text = file_text().replace(
        "  interval: 1m\n",
        "  interval: 1m\n  secret_ref: {name: flux-git, identity_file_env: KEY_FILE, known_hosts_file_env: HOSTS_FILE}\n",
    );
    let (f, errs) = load_text(r.path(), &text);
    assert!(errs.is_empty(), "{errs:?}");
    let msgs: Vec<String> = validate(&f.unwrap(), &catalog(), &["macula-dev".into()])
        .into_sorted()
        .iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    assert_eq!(
        msgs,
        ["flux.secret_ref: needs username_env and password_env (for an http(s) git_url)"]
    );
}

#[test]
fn cross_file_errors() {
    let r = repo();
    let text = file_text()
        .replace(
            "service: infrastructure/registry",
            "service: infrastructure/nope",
        )
        .replace("hostPort: 30000", "hostPort: 8080");
    let (f, errs) = load_text(r.path(), &text);
    assert!(errs.is_empty(), "{errs:?}");
    let f = f.unwrap();
    let mut cat = catalog();
    cat.services[0].published.push((None, 4433, Protocol::Udp));
    let d: Vec<String> = validate(
        &f,
        &cat,
        &["macula-dev".into(), "macula-hub".into(), "ghost".into()],
    )
    .into_sorted()
    .iter()
    .map(|d| format!("{}:{}: {}", d.line.unwrap_or(0), d.path, d.message))
    .collect();
    assert_eq!(
        d,
        [
            "3:registry.service: unknown registry service \"infrastructure/nope\" (services of this host: infrastructure/registry)",
            "13:clusters: the host selects cluster \"ghost\", which is not defined here (defined: macula-dev, macula-hub)",
            "21:clusters.macula-dev.nodes[0].extraPortMappings[1].hostPort: host port 4433/UDP is already used by service infrastructure/registry",
            "28:clusters.macula-hub.nodes[0].extraPortMappings[0].hostPort: host port 8080/TCP is already used by cluster macula-dev at clusters.macula-dev.nodes[0].extraPortMappings[0]",
        ]
    );
    // Clusters the host does not run do not claim ports.
    assert_eq!(validate(&f, &catalog(), &["macula-hub".into()]).len(), 1);
}

#[test]
fn kind_config_fields() {
    let r = repo();
    let (f, _) = load_text(r.path(), &file_text());
    let f = f.unwrap();
    let v = kindconfig::config_value("macula-hub", &f.clusters["macula-hub"]);
    assert_eq!(v["kind"], "Cluster");
    assert_eq!(v["apiVersion"], "kind.x-k8s.io/v1alpha4");
    assert_eq!(v["name"], "macula-hub");
    assert_eq!(
        v["containerdConfigPatches"][0],
        kindconfig::CONTAINERD_PATCH
    );
    assert_eq!(v["nodes"][0]["role"], "control-plane");
    assert_eq!(v["nodes"][0]["image"], "kindest/node:v1.31.0");
    let m = &v["nodes"][0]["extraPortMappings"][0];
    assert_eq!(
        (
            m["containerPort"].as_u64(),
            m["hostPort"].as_u64(),
            m["protocol"].as_str()
        ),
        (Some(30000), Some(30000), Some("TCP"))
    );
    assert!(m.get("listenAddress").is_none());
    assert_eq!(v["nodes"][1]["role"], "worker");
    assert!(v["nodes"][1].get("extraPortMappings").is_none());
    // The rendered file parses back to the same value.
    let back: serde_json::Value =
        serde_yaml::from_str(&kindconfig::render("macula-hub", &f.clusters["macula-hub"])).unwrap();
    assert_eq!(back, v);
}

// ---- plan ----

fn desired(text: &str, names: &[&str], prune: bool) -> Desired {
    let r = repo();
    let (f, errs) = load_text(r.path(), text);
    assert!(errs.is_empty(), "{errs:?}");
    let f = f.unwrap();
    Desired {
        clusters: names
            .iter()
            .map(|n| DesiredCluster {
                name: n.to_string(),
                spec: f.clusters[*n].clone(),
                flux: f.flux_for(n, None).unwrap(),
                secrets: f.clusters[*n]
                    .secrets
                    .iter()
                    .map(super::secrets::DesiredSecret::from_spec)
                    .collect(),
                artifact: None,
            })
            .collect(),
        registry: f.registry.clone(),
        prune,
        host_services: Vec::new(),
    }
}

/// What a converged engine shows for `d`.
fn converged(d: &Desired) -> ClustersObserved {
    ClustersObserved {
        clusters: d
            .clusters
            .iter()
            .map(|c| {
                let nodes = c
                    .spec
                    .nodes
                    .iter()
                    .map(|n| ObservedNode {
                        role: n.role,
                        image: c.spec.image.clone().unwrap(),
                        ports: n.extra_port_mappings.clone(),
                    })
                    .collect();
                let o = ObservedCluster {
                    nodes,
                    registry: RegistryObserved {
                        network: true,
                        hosts_toml: true,
                        configmap: true,
                    },
                    flux: Some(FluxObserved {
                        install_sha256: c.flux.sha256.clone(),
                        install_version: Some(c.flux.version.clone()),
                        sync: Some(SyncObserved::desired(&c.flux)),
                    }),
                    host_services: d.host_services.iter().map(|h| h.alias.clone()).collect(),
                    secrets_in_sync: c.secrets.iter().map(|s| s.id()).collect(),
                };
                (c.name.clone(), o)
            })
            .collect(),
        artifacts: d
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.clone(), Some(c.artifact.as_ref()?.digest.clone()))))
            .collect(),
    }
}

fn lines(steps: &[ClusterStep]) -> Vec<String> {
    steps.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plan_table() {
    let base = file_text();
    let d = desired(&base, &["macula-dev"], false);
    let conv = converged(&d);
    type Case = (&'static str, Desired, ClustersObserved, Vec<&'static str>);
    let mut cases: Vec<Case> = Vec::new();

    cases.push(("converged → empty plan", d.clone(), conv.clone(), vec![]));
    cases.push((
        "fresh machine",
        d.clone(),
        ClustersObserved::default(),
        vec![
            "+ cluster macula-dev (1 node, kindest/node:v1.31.0)",
            "~ cluster macula-dev: wire registry (connect registry to kind network, containerd hosts.toml, ConfigMap kube-public/local-registry-hosting)",
            "+ cluster macula-dev: install flux v2.4.0 (sha256 pinned e3b0c44298fc)",
            "~ cluster macula-dev: flux sync (create GitRepository https://github.com/macula-io/macula-gitops.git (main) and Kustomization ./clusters/macula-dev)",
        ],
    ));
    let moved = desired(
        &base.replace("hostPort: 8080", "hostPort: 9080"),
        &["macula-dev"],
        false,
    );
    cases.push((
        "port change without permission",
        moved.clone(),
        conv.clone(),
        vec!["~ cluster macula-dev: needs recreate (add port 9080→80/TCP; remove port 8080→80/TCP); left as is, set recreate: true to allow"],
    ));
    let allowed = desired(
        &base
            .replace("hostPort: 8080", "hostPort: 9080")
            .replace("recreate: false", "recreate: true"),
        &["macula-dev"],
        false,
    );
    cases.push((
        "port change with recreate: true",
        allowed,
        conv.clone(),
        vec![
            "-/+ cluster macula-dev: recreate (add port 9080→80/TCP; remove port 8080→80/TCP)",
            "~ cluster macula-dev: wire registry (connect registry to kind network, containerd hosts.toml, ConfigMap kube-public/local-registry-hosting)",
            "+ cluster macula-dev: install flux v2.4.0 (sha256 pinned e3b0c44298fc)",
            "~ cluster macula-dev: flux sync (create GitRepository https://github.com/macula-io/macula-gitops.git (main) and Kustomization ./clusters/macula-dev)",
        ],
    ));
    let image = desired(
        &base.replace(
            "kindest/node:v1.31.0\n    recreate",
            "kindest/node:v1.32.0\n    recreate",
        ),
        &["macula-dev"],
        false,
    );
    cases.push((
        "node image change",
        image,
        conv.clone(),
        vec!["~ cluster macula-dev: needs recreate (node image kindest/node:v1.31.0 → kindest/node:v1.32.0); left as is, set recreate: true to allow"],
    ));
    let mut extra = conv.clone();
    extra
        .clusters
        .insert("old-lab".into(), ObservedCluster::default());
    cases.push((
        "undesired cluster is reported",
        d.clone(),
        extra.clone(),
        vec!["! cluster old-lab: running but not desired (left running; prune to delete)"],
    ));
    let mut pruning = d.clone();
    pruning.prune = true;
    cases.push((
        "undesired cluster pruned",
        pruning,
        extra,
        vec!["- cluster old-lab"],
    ));
    let branch = desired(
        &base.replace("branch: main", "branch: dev"),
        &["macula-dev"],
        false,
    );
    cases.push((
        "branch change",
        branch,
        conv.clone(),
        vec!["~ cluster macula-dev: flux sync (branch main → dev)"],
    ));
    let bump = desired(
        &base.replace(SHA, OTHER).replace("v2.4.0", "v2.5.0"),
        &["macula-dev"],
        false,
    );
    cases.push((
        "flux upgrade",
        bump,
        conv.clone(),
        vec!["~ cluster macula-dev: upgrade flux v2.4.0 → v2.5.0 (sha256 pinned 9f86d081884c)"],
    ));
    let repinned = desired(&base.replace(SHA, OTHER), &["macula-dev"], false);
    cases.push((
        "same version, other pin",
        repinned,
        conv.clone(),
        vec!["~ cluster macula-dev: reinstall flux v2.4.0 (digest differs; sha256 pinned 9f86d081884c)"],
    ));
    let unpinned = desired(
        &base.replace(&format!("  sha256: \"{SHA}\"\n"), ""),
        &["macula-dev"],
        false,
    );
    cases.push((
        "no pin: the installed version decides",
        unpinned.clone(),
        conv.clone(),
        vec![],
    ));
    let unpinned_bump = desired(
        &base
            .replace(&format!("  sha256: \"{SHA}\"\n"), "")
            .replace("v2.4.0", "v2.9.5"),
        &["macula-dev"],
        false,
    );
    cases.push((
        "no pin: upgrade verified by the release's checksums",
        unpinned_bump,
        conv.clone(),
        vec!["~ cluster macula-dev: upgrade flux v2.4.0 → v2.9.5 (verified by the release's checksums)"],
    ));
    let mut no_cm = conv.clone();
    no_cm
        .clusters
        .get_mut("macula-dev")
        .unwrap()
        .registry
        .configmap = false;
    cases.push((
        "configmap missing",
        d.clone(),
        no_cm,
        vec!["~ cluster macula-dev: wire registry (ConfigMap kube-public/local-registry-hosting)"],
    ));
    let mut unreachable = conv.clone();
    unreachable.clusters.get_mut("macula-dev").unwrap().flux = None;
    cases.push((
        "flux not observable yet",
        d.clone(),
        unreachable,
        vec![
            "+ cluster macula-dev: install flux v2.4.0 (sha256 pinned e3b0c44298fc)",
            "~ cluster macula-dev: flux sync (create GitRepository https://github.com/macula-io/macula-gitops.git (main) and Kustomization ./clusters/macula-dev)",
        ],
    ));

    let mut reach = desired(
        &base.replace(
            "    flux: {path: ./clusters/macula-dev}",
            "    flux: {path: ./clusters/macula-dev}\n    secrets:\n      - {name: external-dns-pdns, namespace: external-dns, data: {api-key: PDNS_API_KEY}}",
        ),
        &["macula-dev"],
        false,
    );
    let reach_conv = converged(&reach);
    reach.host_services.push(HostService {
        service: "infrastructure/pdns".into(),
        containers: vec!["pdns".into()],
        alias: "macula-pdns".into(),
    });
    cases.push((
        "converged with secrets → empty plan",
        {
            let mut r = reach.clone();
            r.host_services.clear();
            r
        },
        reach_conv.clone(),
        vec![],
    ));
    let mut changed_secret = reach_conv.clone();
    changed_secret
        .clusters
        .get_mut("macula-dev")
        .unwrap()
        .secrets_in_sync
        .clear();
    cases.push((
        "host service not attached, secret value changed",
        reach,
        changed_secret,
        vec![
            "~ cluster macula-dev: reach host services by name (infrastructure/pdns as macula-pdns)",
            "~ cluster macula-dev: secrets external-dns/external-dns-pdns (api-key ← $PDNS_API_KEY)",
        ],
    ));

    for (what, d, o, want) in cases {
        assert_eq!(lines(&plan(&d, &o)), want, "case: {what}");
    }
}

#[test]
fn required_flux_keys_per_cluster() {
    let r = repo();
    let text = file_text().replace("  version: v2.4.0\n", "").replace(
        "flux: {branch: hub}",
        "flux: {branch: hub, version: v2.3.0}",
    );
    let (_, errs) = load_text(r.path(), &text);
    assert_eq!(errs, ["21:clusters.macula-dev.flux.version: not set (set flux.version at the top or for this cluster)"]);
}

#[test]
fn type_errors_have_paths_and_lines() {
    let r = repo();
    let (f, errs) = load_text(
        r.path(),
        &file_text().replace("hostPort: 8080", "hostPort: eighty"),
    );
    assert!(f.is_none());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "20:clusters.macula-dev.nodes[0].extraPortMappings[0].hostPort: invalid type"
        ),
        "{errs:?}"
    );
}

/// The binding file with no `flux.git_url` anywhere: the agent's source URL must stand in.
fn without_git_url() -> ClustersFile {
    let r = repo();
    let text = file_text().replace("  git_url: ${GIT_URL}\n", "");
    let (f, errs) = load_text(r.path(), &text);
    assert!(errs.is_empty(), "{errs:?}");
    f.unwrap()
}

#[test]
fn git_url_defaults_to_a_reachable_source() {
    let f = without_git_url();
    assert_eq!(
        f.flux_for("macula-dev", Some("https://git.example/r.git"))
            .unwrap()
            .git_url,
        "https://git.example/r.git"
    );
    // The agent's own credentials never reach the GitRepository object.
    assert_eq!(
        f.flux_for("macula-dev", Some("https://bot:s3cret@git.example/r.git"))
            .unwrap()
            .git_url,
        "https://git.example/r.git"
    );
    for local in [
        "file:///srv/repo",
        "/srv/repo",
        "http://127.0.0.1:3000/r.git",
        "http://localhost/r",
    ] {
        let (key, e) = f.flux_for("macula-dev", Some(local)).unwrap_err();
        assert_eq!(key, "git_url");
        assert!(e.contains("not reachable from a cluster"), "{local}: {e}");
    }
}

/// Parse once: what apply needs is resolved in the pass that validates, so a missing Flux
/// source is a diagnostic with file, path and line, and the resolved value carries it.
#[test]
fn resolve_reports_the_flux_source_and_yields_what_apply_uses() {
    let f = without_git_url();
    let selected = ["macula-dev".to_string(), "macula-hub".to_string()];

    let (_, d) = super::resolve(&f, &catalog(), &selected, Some("file:///srv/repo"));
    let msgs: Vec<String> = d
        .into_sorted()
        .iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for (m, name) in msgs.iter().zip(["macula-dev", "macula-hub"]) {
        assert!(
            m.starts_with(&format!("clusters.{name}.flux.git_url: "))
                && m.contains("file:///srv/repo is not reachable from a cluster"),
            "{m}"
        );
    }

    let (resolved, d) =
        super::resolve(&f, &catalog(), &selected, Some("https://git.example/r.git"));
    assert!(d.is_empty(), "{d}");
    let names: Vec<&str> = resolved.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, selected);
    assert!(resolved
        .clusters
        .iter()
        .all(|c| c.flux.git_url == "https://git.example/r.git"));
    let (desired, wiring) = resolved.desired(true, "kind");
    let wiring = wiring.expect("a selected cluster uses the registry");
    assert_eq!(
        (wiring.container.as_str(), wiring.network.as_str()),
        ("kind-registry", "kind")
    );
    assert_eq!(desired.registry.as_ref(), Some(&wiring.spec));
    assert!(desired.prune);
}

#[test]
fn flux_source_git_or_oci() {
    let r = repo();
    let text = "registry: {service: infrastructure/registry, host: 'localhost:5001', cluster: 'kind-registry:5000'}\n\
flux:\n  version: v2.9.5\n  source: oci\n\
clusters:\n  macula-dev:\n    image: kindest/node:v1.36.4\n    nodes: [{role: control-plane}]\n  macula-hub:\n    image: kindest/node:v1.36.4\n    nodes: [{role: control-plane}]\n    flux: {source: git, git_url: 'https://git.example/r.git'}\n";
    let (f, errs) = load_text(r.path(), text);
    assert!(errs.is_empty(), "{errs:?}");
    let f = f.unwrap();
    // No git_url needed for oci; the artifact goes to registry.host and is read by its
    // in-cluster name; a cluster may still follow git.
    let dev = f.flux_for("macula-dev", None).unwrap();
    assert_eq!(
        dev.source,
        FluxSource::Oci(super::file::OciTarget {
            push_host: "localhost:5001".into(),
            repository: "clusters/macula-dev".into(),
            tag: "latest".into(),
            url: "oci://kind-registry:5000/clusters/macula-dev".into(),
        })
    );
    assert_eq!(
        f.flux_for("macula-hub", None).unwrap().source,
        FluxSource::Git
    );
    let objs = super::flux::sync_objects(&dev);
    assert_eq!(
        objs[0],
        serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"interval": "1m", "url": "oci://kind-registry:5000/clusters/macula-dev", "ref": {"tag": "latest"}, "insecure": true},
        })
    );
    assert_eq!(objs[1]["spec"]["sourceRef"]["kind"], "OCIRepository");
    assert_eq!(objs[1]["spec"]["path"], "./clusters/macula-dev");

    // Bad values, oci without a registry, credentials for oci: errors at their lines.
    let (_, errs) = load_text(
        r.path(),
        "flux:\n  version: v2.9.5\n  source: svn\n\
clusters:\n  macula-dev:\n    image: kindest/node:v1.36.4\n    nodes: [{role: control-plane}]\n    flux:\n      source: oci\n      secret_ref: {name: creds, username_env: U, password_env: P}\n",
    );
    assert_eq!(
        errs,
        [
            "3:flux.source: \"svn\" is not a Flux source; expected git or oci",
            "9:clusters.macula-dev.flux.source: oci needs the top-level registry block: the agent pushes the artifact to registry.host and Flux pulls it from registry.cluster",
            "10:clusters.macula-dev.flux.secret_ref: is for a git source; the local registry an oci source reads needs no credentials",
        ]
    );
}
