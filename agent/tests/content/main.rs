//! The Macula gitops content (`desired-state/`, `clusters/`, `base/`), checked
//! with the real tools that will consume it: kubectl kustomize, Debian's
//! docker-compose, nginx, promtool, pdns_server/pdnsutil against a throwaway
//! PostgreSQL, and the agent's own `validate`.
//!
//! YAML is turned into JSON by Debian's python3-yaml (a dependency of the
//! docker-compose package) so that assertions work on structure, not on text.
//!
//! Tools needed on PATH / in /usr: kubectl, docker-compose, nginx, promtool,
//! pdns_server, pdnsutil (+ pdns-backend-pgsql), PostgreSQL server binaries
//! (/usr/lib/postgresql/<v>/bin), psql, /usr/bin/python3 with yaml.
// Test code: unwrap() is fine here, a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers ---

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

fn ds() -> PathBuf {
    repo().join("desired-state")
}

const STACKS: [&str; 4] = ["infrastructure", "observability", "data", "tools"];

fn describe(cmd: &Command) -> String {
    format!("{cmd:?}")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Runs `cmd`, fails the test with its output unless it exits 0, returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base =
            std::env::temp_dir().join(format!("macula-content-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        TempDir(base)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------- JSON ---

/// Documents are serde_json values. A lookup that misses gives `Null` (serde_json's indexing),
/// so a chain of lookups reads like the path it follows, and a missing piece fails the
/// assertion that uses it, with the path in its message.
type J = serde_json::Value;

trait Json {
    fn key(&self, key: &str) -> &J;
    /// Dotted path, e.g. `spec.template.spec.containers`.
    fn at(&self, path: &str) -> &J;
    fn str(&self) -> Option<&str>;
    /// Scalars as text (ports and booleans come in as numbers/bools).
    fn text(&self) -> String;
    fn arr(&self) -> &[J];
    fn obj(&self) -> &serde_json::Map<String, J>;
}

static EMPTY: std::sync::LazyLock<serde_json::Map<String, J>> =
    std::sync::LazyLock::new(serde_json::Map::new);

impl Json for J {
    fn key(&self, key: &str) -> &J {
        &self[key]
    }
    fn at(&self, path: &str) -> &J {
        path.split('.').fold(self, |v, k| &v[k])
    }
    fn str(&self) -> Option<&str> {
        self.as_str()
    }
    fn text(&self) -> String {
        match self {
            J::String(s) => s.clone(),
            J::Null => String::new(),
            // YAML `1.0` arrives as a float: show it as the integer it is.
            J::Number(n) if n.as_f64().is_some_and(|f| n.is_f64() && f.fract() == 0.0) => {
                format!("{}", n.as_f64().unwrap_or_default() as i64)
            }
            other => other.to_string(),
        }
    }
    fn arr(&self) -> &[J] {
        self.as_array().map_or(&[], Vec::as_slice)
    }
    fn obj(&self) -> &serde_json::Map<String, J> {
        self.as_object().unwrap_or(&EMPTY)
    }
}

fn parse_json(text: &str) -> J {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("json: {e}"))
}

/// All YAML documents in `text`, via python3-yaml's safe loader.
fn yaml_docs(text: &str) -> Vec<J> {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, json, yaml\n\
             docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
             print(json.dumps(docs, default=str, ensure_ascii=False))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (python3-yaml comes with Debian's docker-compose)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "YAML does not parse:\n{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    match parse_json(&String::from_utf8(out.stdout).unwrap()) {
        J::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other:?}"),
    }
}

fn yaml_file(path: &Path) -> J {
    let mut docs = yaml_docs(&read(path));
    assert_eq!(
        docs.len(),
        1,
        "{} must hold exactly one YAML document",
        path.display()
    );
    docs.remove(0)
}

// -------------------------------------------------------------- kustomize ---

fn kustomize(dir: &Path) -> Vec<J> {
    let out = run_ok(Command::new("kubectl").arg("kustomize").arg(dir));
    let docs = yaml_docs(&out);
    assert!(!docs.is_empty(), "{} renders nothing", dir.display());
    docs
}

fn find<'a>(docs: &'a [J], kind: &str, name: &str) -> &'a J {
    docs.iter()
        .find(|d| d.key("kind").str() == Some(kind) && d.at("metadata.name").str() == Some(name))
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{}/{}", d.key("kind").text(), d.at("metadata.name").text()))
                .collect();
            panic!("no {kind} {name} in rendered output; have {have:?}")
        })
}

fn containers(workload: &J) -> &[J] {
    workload.at("spec.template.spec.containers").arr()
}

fn container<'a>(workload: &'a J, name: &str) -> &'a J {
    containers(workload)
        .iter()
        .find(|c| c.key("name").str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name} in {:?}", workload.at("metadata.name")))
}

/// Value of an env var: literal text, or `secret:<name>/<key>` / `configmap:<name>/<key>`.
fn env(c: &J, var: &str) -> String {
    let e = c
        .key("env")
        .arr()
        .iter()
        .find(|e| e.key("name").str() == Some(var))
        .unwrap_or_else(|| panic!("env {var} missing in container {}", c.key("name").text()));
    if let J::String(v) = e.key("value") {
        return v.clone();
    }
    let s = e.at("valueFrom.secretKeyRef");
    if !s.is_null() {
        return format!("secret:{}/{}", s.key("name").text(), s.key("key").text());
    }
    let m = e.at("valueFrom.configMapKeyRef");
    if !m.is_null() {
        return format!("configmap:{}/{}", m.key("name").text(), m.key("key").text());
    }
    String::new()
}

fn has_port(c: &J, port: u16, proto: &str) -> bool {
    c.key("ports").arr().iter().any(|p| {
        p.key("containerPort").text() == port.to_string()
            && p.key("protocol").str().unwrap_or("TCP") == proto
    })
}

fn svc_port<'a>(svc: &'a J, port: u16, proto: &str) -> &'a J {
    svc.at("spec.ports")
        .arr()
        .iter()
        .find(|p| {
            p.key("port").text() == port.to_string()
                && p.key("protocol").str().unwrap_or("TCP") == proto
        })
        .unwrap_or_else(|| {
            panic!(
                "service {} has no {port}/{proto}",
                svc.at("metadata.name").text()
            )
        })
}

fn dirs(parent: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(parent)
        .unwrap_or_else(|e| panic!("{}: {e}", parent.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

const BASES: [&str; 13] = [
    "macula-gateway",
    "postgres",
    "cortex-iq-simulation",
    "cortex-iq-homes",
    "cortex-iq-utilities",
    "cortex-iq-projections",
    "cortex-iq-queries",
    "cortex-iq-dashboard",
    "macula-console",
    "macula-bootstrap",
    "macula-arcade",
    "ingress-nginx",
    "external-dns",
];

const CLUSTERS: [&str; 5] = [
    "macula-dev",
    "macula-hub",
    "be-antwerp",
    "be-brabant",
    "be-east-flanders",
];

/// Public images the clusters may pull; everything else must come from the
/// local registry.
const PUBLIC_CLUSTER_IMAGES: [&str; 3] = [
    "postgres:16-alpine",
    "registry.k8s.io/ingress-nginx/controller:v1.11.3",
    "registry.k8s.io/external-dns/external-dns:v0.15.0",
];

fn workloads(docs: &[J]) -> impl Iterator<Item = &J> {
    docs.iter().filter(|d| {
        matches!(
            d.key("kind").str(),
            Some("Deployment" | "StatefulSet" | "DaemonSet")
        )
    })
}

#[test]
fn kustomize_every_base_builds_with_probes_resources_labels() {
    let base = repo().join("base");
    let found: BTreeSet<String> = dirs(&base)
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for b in BASES {
        assert!(found.contains(b), "base/{b} missing");
    }
    for dir in dirs(&base) {
        let docs = kustomize(&dir);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut n = 0;
        for w in workloads(&docs) {
            n += 1;
            let wname = w.at("metadata.name").text();
            let labels = w.at("metadata.labels");
            for l in ["app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
                assert!(
                    labels.key(l).str().is_some(),
                    "{name}: {wname} lacks label {l}"
                );
            }
            let sel = w.at("spec.selector.matchLabels");
            let tpl = w.at("spec.template.metadata.labels");
            for (k, v) in sel.obj() {
                assert_eq!(
                    tpl.key(k),
                    v,
                    "{name}: selector {k} not on the pod template"
                );
            }
            for c in containers(w) {
                let cname = c.key("name").text();
                for probe in ["readinessProbe", "livenessProbe"] {
                    assert!(!c.key(probe).is_null(), "{name}/{cname}: no {probe}");
                }
                for k in [
                    "requests.cpu",
                    "requests.memory",
                    "limits.cpu",
                    "limits.memory",
                ] {
                    assert!(
                        !c.key("resources").at(k).is_null(),
                        "{name}/{cname}: no resources.{k}"
                    );
                }
                let image = c.key("image").text();
                assert!(
                    image.starts_with(&format!("localhost:5001/macula/{name}:"))
                        || PUBLIC_CLUSTER_IMAGES.contains(&image.as_str()),
                    "{name}/{cname}: unexpected image {image}"
                );
            }
        }
        assert!(n > 0, "base/{name} has no workload");
    }
}

#[test]
fn kustomize_every_cluster_builds_in_flux_layout() {
    let clusters = repo().join("clusters");
    let found: Vec<String> = dirs(&clusters)
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for c in CLUSTERS {
        assert!(found.iter().any(|f| f == c), "clusters/{c} missing");
    }
    for dir in dirs(&clusters) {
        let c = dir.file_name().unwrap().to_string_lossy().into_owned();
        for sub in ["flux-system", "infrastructure", "apps"] {
            assert!(dir.join(sub).is_dir(), "clusters/{c}/{sub} missing");
        }
        // Overlays, not copies: no workload manifests of their own.
        for sub in ["infrastructure", "apps"] {
            let k = read(&dir.join(sub).join("kustomization.yaml"));
            assert!(
                k.contains("../base/"),
                "clusters/{c}/{sub} does not use base/"
            );
            let docs = kustomize(&dir.join(sub));
            for w in workloads(&docs) {
                for ct in containers(w) {
                    let image = ct.key("image").text();
                    assert!(
                        image.starts_with("localhost:5001/macula/")
                            || PUBLIC_CLUSTER_IMAGES.contains(&image.as_str()),
                        "clusters/{c}/{sub}: image {image} is neither local nor allowed"
                    );
                }
            }
        }
        let root = kustomize(&dir);
        let infra = find(&root, "Kustomization", "infrastructure");
        let apps = find(&root, "Kustomization", "apps");
        let sync = find(&root, "Kustomization", "flux-system");
        assert_eq!(sync.at("spec.path").text(), format!("./clusters/{c}"));
        assert_eq!(
            infra.at("spec.path").text(),
            format!("./clusters/{c}/infrastructure")
        );
        assert_eq!(apps.at("spec.path").text(), format!("./clusters/{c}/apps"));
        assert_eq!(
            infra.at("spec.prune"),
            &J::Bool(true),
            "{c}: infrastructure prune"
        );
        assert_eq!(apps.at("spec.prune"), &J::Bool(true), "{c}: apps prune");
        let deps: Vec<String> = apps
            .at("spec.dependsOn")
            .arr()
            .iter()
            .map(|d| d.key("name").text())
            .collect();
        assert_eq!(
            deps,
            ["infrastructure"],
            "{c}: apps must dependsOn infrastructure"
        );
        let git = find(&root, "GitRepository", "flux-system");
        assert_eq!(
            git.at("spec.url").text(),
            "https://github.com/macula-io/macula-gitops.git"
        );
        assert_eq!(git.at("spec.ref.branch").text(), "main");
    }
}

#[test]
fn macula_dev_renders_ingress_external_dns_and_apps() {
    let dir = repo().join("clusters/macula-dev");
    let infra = kustomize(&dir.join("infrastructure"));
    let ctl = find(&infra, "Deployment", "ingress-nginx-controller");
    let c = container(ctl, "controller");
    assert_eq!(
        c.key("image").text(),
        "registry.k8s.io/ingress-nginx/controller:v1.11.3"
    );
    for (port, host) in [(80, 80), (443, 443)] {
        assert!(
            c.key("ports")
                .arr()
                .iter()
                .any(|p| p.key("containerPort").text() == port.to_string()
                    && p.key("hostPort").text() == host.to_string()),
            "ingress-nginx must bind hostPort {host} (kind provider)"
        );
    }
    find(&infra, "IngressClass", "nginx");
    let edns = find(&infra, "Deployment", "external-dns");
    let e = container(edns, "external-dns");
    let args: Vec<String> = e.key("args").arr().iter().map(J::text).collect();
    for a in [
        "--provider=pdns",
        "--pdns-server=$(PDNS_SERVER)",
        "--domain-filter=macula.local",
        "--source=ingress",
    ] {
        assert!(
            args.iter().any(|x| x == a),
            "external-dns lacks {a}: {args:?}"
        );
    }
    assert!(env(e, "EXTERNAL_DNS_PDNS_API_KEY").starts_with("secret:external-dns-pdns"));
    let cm_name = env(e, "PDNS_SERVER");
    let cm_name = cm_name
        .strip_prefix("configmap:")
        .and_then(|s| s.split('/').next())
        .expect("PDNS_SERVER from a ConfigMap")
        .to_string();
    let cm = find(&infra, "ConfigMap", &cm_name);
    // PowerDNS by the alias the agent gives it on the kind network, on its container port:
    // no forward, no host port, no address.
    let clusters_file = yaml_file(&ds().join("clusters.yaml"));
    let alias = clusters_file
        .key("host_services")
        .arr()
        .iter()
        .find(|h| h.key("service").text() == "infrastructure/pdns")
        .expect("infrastructure/pdns among clusters.yaml host_services")
        .key("alias")
        .text();
    assert_eq!(cm.at("data.server").text(), format!("http://{alias}:8081"));
    let routing = yaml_file(&ds().join("routing.yaml"));
    assert!(
        !routing
            .key("forwards")
            .arr()
            .iter()
            .any(|f| f.at("target.service").text() == "infrastructure/pdns"),
        "no forward exposes the PowerDNS API"
    );

    let apps = kustomize(&dir.join("apps"));
    let boot = find(&apps, "StatefulSet", "macula-bootstrap");
    let b = container(boot, "bootstrap");
    assert_eq!(
        b.key("image").text(),
        "localhost:5001/macula/macula-bootstrap:latest"
    );
    assert!(
        has_port(b, 4433, "UDP"),
        "bootstrap must listen on 4433/udp"
    );
    svc_port(find(&apps, "Service", "macula-bootstrap"), 4433, "UDP");

    let console = find(&apps, "Deployment", "macula-console");
    let cc = container(console, "macula-console");
    assert_eq!(
        cc.key("image").text(),
        "localhost:5001/macula/macula-console:latest"
    );
    assert!(env(cc, "DATABASE_URL").contains("@postgres:5432/"));
    svc_port(find(&apps, "Service", "macula-console"), 4000, "TCP");
    let pg = find(&apps, "StatefulSet", "postgres");
    assert_eq!(
        container(pg, "postgres").key("image").text(),
        "postgres:16-alpine"
    );
    let secret = env(container(pg, "postgres"), "POSTGRES_DB");
    let secret_name = secret
        .trim_start_matches("secret:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(agent_secret("macula-dev", "macula", &secret_name).is_some());

    for peer in ["peer1", "peer2"] {
        let d = find(&apps, "Deployment", &format!("macula-arcade-{peer}"));
        let c = container(d, "macula-arcade");
        assert_eq!(
            c.key("image").text(),
            "localhost:5001/macula/macula-arcade:latest"
        );
        assert_eq!(env(c, "PHX_HOST"), format!("{peer}.macula.local"));
        assert_eq!(
            d.at("spec.selector.matchLabels")
                .key("app.kubernetes.io/instance")
                .text(),
            peer
        );
        let svc = find(&apps, "Service", &format!("macula-arcade-{peer}"));
        assert_eq!(
            svc.at("spec.selector")
                .key("app.kubernetes.io/instance")
                .text(),
            peer
        );
    }

    let mut hosts = BTreeMap::new();
    for ing in apps
        .iter()
        .filter(|d| d.key("kind").str() == Some("Ingress"))
    {
        for rule in ing.at("spec.rules").arr() {
            let backend = rule.at("http.paths").arr()[0].at("backend.service");
            hosts.insert(rule.key("host").text(), backend.key("name").text());
            // The backend Service exists in the same render.
            find(&apps, "Service", &backend.key("name").text());
        }
    }
    for (host, svc) in [
        ("console.macula.local", "macula-console"),
        ("bootstrap.macula.local", "macula-bootstrap"),
        ("peer1.macula.local", "macula-arcade-peer1"),
        ("peer2.macula.local", "macula-arcade-peer2"),
    ] {
        assert_eq!(
            hosts.get(host).map(String::as_str),
            Some(svc),
            "Ingress for {host}"
        );
    }
}

#[test]
fn macula_hub_renders_postgres_gateway_and_cortex_iq() {
    let dir = repo().join("clusters/macula-hub");
    let infra = kustomize(&dir.join("infrastructure"));
    let pg = find(&infra, "StatefulSet", "postgres");
    let p = container(pg, "postgres");
    assert_eq!(p.key("image").text(), "postgres:16-alpine");
    for var in ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"] {
        assert!(
            env(p, var).starts_with("secret:postgres-credentials"),
            "{var} from the Secret"
        );
    }
    let secret = agent_secret("macula-hub", "macula", "postgres-credentials")
        .expect("postgres-credentials made by the agent");
    assert_eq!(secret.at("data.database").text(), "CORTEX_DB_NAME");

    let gw = find(&infra, "Deployment", "macula-gateway");
    let g = container(gw, "gateway");
    assert_eq!(
        g.key("image").text(),
        "localhost:5001/macula/macula-gateway:latest"
    );
    assert!(has_port(g, 9443, "UDP"));
    let svc = find(&infra, "Service", "macula-gateway");
    assert_eq!(svc.at("spec.type").text(), "NodePort");
    assert_eq!(svc_port(svc, 9443, "UDP").key("nodePort").text(), "30080");
    assert_eq!(svc_port(svc, 8080, "TCP").key("nodePort").text(), "30081");

    let apps = kustomize(&dir.join("apps"));
    for app in [
        "cortex-iq-simulation",
        "cortex-iq-projections",
        "cortex-iq-queries",
        "cortex-iq-dashboard",
    ] {
        let c = container(find(&apps, "Deployment", app), app);
        assert_eq!(
            c.key("image").text(),
            format!("localhost:5001/macula/{app}:latest")
        );
        assert!(env(c, "MACULA_URL").starts_with("https://macula-gateway."));
        assert_eq!(env(c, "MACULA_REALM"), "be.cortexiq.energy");
    }
    for app in [
        "cortex-iq-projections",
        "cortex-iq-queries",
        "cortex-iq-dashboard",
    ] {
        let c = container(find(&apps, "Deployment", app), app);
        let url = env(c, "DATABASE_URL");
        assert!(
            url.starts_with("ecto://") && url.contains(":5432/"),
            "{app}: {url}"
        );
        assert!(
            env(c, "DB_HOST").starts_with("postgres.macula."),
            "{app} talks to the hub DB"
        );
    }
    let sim = container(
        find(&apps, "Deployment", "cortex-iq-simulation"),
        "cortex-iq-simulation",
    );
    assert!(env(sim, "SIMULATION_SPEED").parse::<f64>().is_ok());
    let start = env(sim, "SIMULATION_START_DATE");
    assert!(
        start.len() == 10 && start.as_bytes()[4] == b'-',
        "date: {start}"
    );
    let dash = find(&apps, "Deployment", "cortex-iq-dashboard");
    let d = container(dash, "cortex-iq-dashboard");
    assert!(has_port(d, 4000, "TCP"));
    assert!(env(d, "SECRET_KEY_BASE").starts_with("secret:dashboard-secrets"));
    assert!(!env(d, "PHX_HOST").is_empty());
    let dsvc = find(&apps, "Service", "cortex-iq-dashboard");
    assert_eq!(dsvc.at("spec.type").text(), "NodePort");
    assert_eq!(svc_port(dsvc, 4000, "TCP").key("nodePort").text(), "30000");
    // Apps read the same database name the hub PostgreSQL creates.
    let app_secret = agent_secret("macula-hub", "cortex-iq", "postgres-credentials")
        .expect("postgres-credentials Secret for apps");
    assert_eq!(
        app_secret.key("data"),
        secret.key("data"),
        "apps and DB credentials differ"
    );
}

/// `clusters.<cluster>.secrets` entry `namespace/name` in clusters.yaml: a Secret the agent
/// makes from the host's environment (`data` maps each key to a variable name).
fn agent_secret(cluster: &str, namespace: &str, name: &str) -> Option<J> {
    yaml_file(&ds().join("clusters.yaml"))
        .at(&format!("clusters.{cluster}.secrets"))
        .arr()
        .iter()
        .find(|s| s.key("namespace").text() == namespace && s.key("name").text() == name)
        .cloned()
}

/// Nothing under clusters/ or base/ carries a credential or a network-dependent address:
/// kustomize renders no Secret, every Secret a workload reads is one the agent makes from
/// the host's environment (declared in clusters.yaml with the keys read), and the only IP
/// literals are loopback addresses of routing.yaml's plan (the host side of the ingress).
#[test]
fn no_secret_or_fixed_address_in_clusters_and_base() {
    let routing = yaml_file(&ds().join("routing.yaml"));
    let loopback: Vec<String> = routing
        .key("loopback")
        .arr()
        .iter()
        .map(|l| l.key("address").text())
        .collect();
    let ip = |w: &str| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut files = Vec::new();
    let mut stack = vec![repo().join("clusters"), repo().join("base")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in &files {
        let text = read(f);
        assert!(
            !text.contains("secretGenerator"),
            "{} generates a Secret",
            f.display()
        );
        for w in text.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
            let w = w.trim_matches('.');
            assert!(
                !ip(w) || loopback.iter().any(|l| l == w),
                "{}: fixed address {w}",
                f.display()
            );
        }
    }
    for dir in dirs(&repo().join("clusters")) {
        let c = dir.file_name().unwrap().to_string_lossy().into_owned();
        for sub in ["infrastructure", "apps"] {
            let docs = kustomize(&dir.join(sub));
            assert!(
                !docs.iter().any(|d| d.key("kind").str() == Some("Secret")),
                "clusters/{c}/{sub} renders a Secret"
            );
            for w in workloads(&docs) {
                let ns = w.at("metadata.namespace").text();
                for ct in containers(w) {
                    for e in ct.key("env").arr() {
                        let r = e.at("valueFrom.secretKeyRef");
                        if r.is_null() {
                            continue;
                        }
                        let (name, key) = (r.key("name").text(), r.key("key").text());
                        let s = agent_secret(&c, &ns, &name).unwrap_or_else(|| {
                            panic!("clusters/{c}/{sub}: Secret {ns}/{name} is not made by the agent (clusters.yaml)")
                        });
                        assert!(
                            !s.at(&format!("data.{key}")).is_null(),
                            "clusters.yaml {c} Secret {ns}/{name} lacks key {key}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn edge_clusters_join_the_hub_with_region_overlays() {
    let mut seen_sources = BTreeSet::new();
    for c in ["be-antwerp", "be-brabant", "be-east-flanders"] {
        let dir = repo().join("clusters").join(c);
        let infra = kustomize(&dir.join("infrastructure"));
        let g = container(find(&infra, "Deployment", "macula-gateway"), "gateway");
        let hub = env(g, "HUB_GATEWAY_URL");
        assert!(
            hub.contains("macula-hub") && hub.ends_with(":30080"),
            "{c}: {hub}"
        );
        let apps = kustomize(&dir.join("apps"));
        let homes = container(
            find(&apps, "Deployment", "cortex-iq-homes"),
            "cortex-iq-homes",
        );
        let utils = container(
            find(&apps, "Deployment", "cortex-iq-utilities"),
            "cortex-iq-utilities",
        );
        assert_eq!(
            homes.key("image").text(),
            "localhost:5001/macula/cortex-iq-homes:latest"
        );
        assert_eq!(
            utils.key("image").text(),
            "localhost:5001/macula/cortex-iq-utilities:latest"
        );
        let sources = env(homes, "HOMES_SOURCES");
        assert!(!sources.is_empty(), "{c}: HOMES_SOURCES empty");
        seen_sources.insert(sources);
        assert!(env(utils, "PROVIDERS_COUNT").parse::<u32>().unwrap() > 0);
        assert_eq!(env(homes, "REGION"), c);
        assert_eq!(env(utils, "REGION"), c);
        assert_eq!(env(homes, "MACULA_REALM"), "be.cortexiq.energy");
    }
    assert_eq!(
        seen_sources.len(),
        3,
        "each region has its own HOMES_SOURCES"
    );
}

// ---------------------------------------------------------------- compose ---

fn compose_config(stack: &str) -> J {
    let out = run_ok(
        Command::new("docker-compose")
            .arg("--env-file")
            .arg(ds().join(".env.example"))
            .arg("-f")
            .arg(ds().join("stacks").join(stack).join("compose.yaml"))
            .arg("config"),
    );
    yaml_docs(&out).remove(0)
}

/// (host ip, host port, proto) -> "stack/service"
fn published(stack: &str, cfg: &J) -> Vec<((String, u16, String), String)> {
    let mut v = Vec::new();
    for (svc, s) in cfg.key("services").obj() {
        for p in s.key("ports").arr() {
            // docker-compose 1.29 normalises short syntax to "ip:host:container/proto".
            let t = p.text();
            let (addr, proto) = t.split_once('/').unwrap_or((&t, "tcp"));
            let parts: Vec<&str> = addr.split(':').collect();
            assert_eq!(
                parts.len(),
                3,
                "{stack}/{svc}: publish on an explicit host IP: {t}"
            );
            v.push((
                (
                    parts[0].to_string(),
                    parts[1].parse().unwrap(),
                    proto.to_string(),
                ),
                format!("{stack}/{svc}"),
            ));
        }
    }
    v
}

#[test]
fn compose_config_every_stack() {
    let expected_ips: BTreeMap<&str, &str> = [
        ("observability/prometheus", "172.23.0.20"),
        ("observability/grafana", "172.23.0.21"),
        ("observability/loki", "172.23.0.22"),
        ("observability/tempo", "172.23.0.23"),
        ("data/minio", "172.23.0.30"),
        ("data/timescaledb", "172.23.0.31"),
    ]
    .into_iter()
    .collect();
    let mut ips: BTreeMap<String, String> = BTreeMap::new();
    let mut ports: BTreeMap<(String, u16, String), String> = BTreeMap::new();
    let mut images = BTreeSet::new();
    for stack in STACKS {
        let cfg = compose_config(stack);
        let services = cfg.key("services").obj();
        assert!(!services.is_empty(), "{stack}: no services");
        for (name, s) in services {
            let id = format!("{stack}/{name}");
            assert_eq!(
                s.key("container_name").text(),
                format!("macula-{name}"),
                "{id}"
            );
            assert_eq!(s.key("restart").text(), "unless-stopped", "{id}: restart");
            let hc = s.key("healthcheck");
            assert!(!hc.key("test").arr().is_empty(), "{id}: healthcheck test");
            assert_ne!(
                hc.key("disable"),
                &J::Bool(true),
                "{id}: healthcheck disabled"
            );
            let ip = s.at("networks.macula-infra.ipv4_address").text();
            assert!(
                ip.starts_with("172.23."),
                "{id}: static ipv4_address on macula-infra"
            );
            if let Some(prev) = ips.insert(ip.clone(), id.clone()) {
                panic!("{ip} given to both {prev} and {id}");
            }
            if let Some(want) = expected_ips.get(id.as_str()) {
                assert_eq!(&ip, want, "{id}: design IP");
            }
            images.insert(s.key("image").text());
            // Bind mounts: files from this repo, never outside it.
            for v in s.key("volumes").arr() {
                let t = v.text();
                let src = t.split(':').next().unwrap();
                if src.starts_with('/') {
                    let p = Path::new(src);
                    assert!(p.starts_with(repo()), "{id}: bind {src} outside the repo");
                    assert!(p.exists(), "{id}: bind source {src} missing");
                }
            }
        }
        for (key, who) in published(stack, &cfg) {
            assert!(
                key.0.starts_with("127.0.0."),
                "{who} publishes on {} (loopback only)",
                key.0
            );
            if let Some(prev) = ports.insert(key.clone(), who.clone()) {
                panic!("{key:?} published by both {prev} and {who}");
            }
        }
        match stack {
            "infrastructure" => {
                let nets = cfg.key("networks").key("macula-infra");
                assert_eq!(nets.key("name").text(), "macula-infra");
                let ipam = &nets.at("ipam.config").arr()[0];
                assert_eq!(ipam.key("subnet").text(), "172.23.0.0/16");
                assert_eq!(ipam.key("gateway").text(), "172.23.0.1");
                for v in ["registry-data", "dns-postgres-data"] {
                    assert!(!cfg.key("volumes").key(v).is_null(), "volume {v}");
                }
                let reg = cfg.key("services").key("registry");
                let aliases: Vec<String> = reg
                    .at("networks.macula-infra.aliases")
                    .arr()
                    .iter()
                    .map(J::text)
                    .collect();
                assert!(aliases.contains(&"kind-registry".to_string()));
                let pdns = cfg.key("services").key("pdns");
                let cmd: Vec<String> = pdns.key("command").arr().iter().map(J::text).collect();
                assert!(
                    cmd.contains(&"--api-key=macula-local-pdns-api-key".to_string()),
                    "{cmd:?}"
                );
            }
            _ => {
                assert_eq!(
                    cfg.at("networks.macula-infra.external"),
                    &J::Bool(true),
                    "{stack}"
                );
            }
        }
    }
    assert_eq!(
        ports
            .get(&("127.0.0.1".into(), 5001, "tcp".into()))
            .map(String::as_str),
        Some("infrastructure/registry")
    );
    assert_eq!(
        ports
            .get(&("127.0.0.4".into(), 3000, "tcp".into()))
            .map(String::as_str),
        Some("observability/grafana")
    );
    for svc in expected_ips.keys() {
        assert!(ips.values().any(|v| v == svc), "{svc} missing");
    }
    for img in &images {
        assert!(img.contains(':'), "image {img} must carry a tag");
    }
    for forbidden in ["jaeger", "redis", "gitea"] {
        assert!(
            !images.iter().any(|i| i.contains(forbidden)),
            "{forbidden} is not in the approved design"
        );
    }
}

#[test]
fn env_example_defines_every_variable_and_env_is_ignored() {
    let example = read(&ds().join(".env.example"));
    let defined: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty())
        .collect();
    let mut used = BTreeSet::new();
    let mut files: Vec<PathBuf> = STACKS
        .iter()
        .map(|s| ds().join("stacks").join(s).join("compose.yaml"))
        .collect();
    files.push(ds().join("routing.yaml"));
    for f in &files {
        let text = read(f);
        let b = text.as_bytes();
        let mut i = 0;
        while i + 1 < b.len() {
            if b[i] == b'$' && b[i + 1] == b'$' {
                i += 2;
                continue;
            }
            if b[i] == b'$' && b[i + 1] == b'{' {
                let rest = &text[i + 2..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap();
                used.insert(rest[..end].to_string());
            }
            i += 1;
        }
    }
    assert!(
        used.len() >= 8,
        "expected the stacks to use .env variables: {used:?}"
    );
    let missing: Vec<&String> = used.difference(&defined).collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    let gitignore = read(&repo().join(".gitignore"));
    assert!(gitignore.lines().any(|l| l.trim() == "desired-state/.env"));
}

// ------------------------------------------------------------------ nginx ---

#[test]
fn nginx_accepts_every_config() {
    let confs = [
        "stacks/infrastructure/host-nginx/macula.conf",
        "stacks/infrastructure/registry-proxy/registry.conf",
    ];
    for rel in confs {
        let tmp = TempDir::new("nginx");
        let t = tmp.path().display().to_string();
        // The same http{} context the nginx image's default nginx.conf gives
        // conf.d/default.conf, with everything writable moved into the temp dir.
        let main = format!(
            "pid {t}/nginx.pid;\nerror_log {t}/error.log;\nevents {{}}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log {t}/access.log;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  include {};\n}}\n",
            ds().join(rel).display()
        );
        fs::write(tmp.path().join("nginx.conf"), main).unwrap();
        let out = output(
            Command::new("nginx")
                .arg("-t")
                .arg("-p")
                .arg(format!("{t}/"))
                // Startup error log too, so non-root runs do not touch /var/log.
                .arg("-e")
                .arg(format!("{t}/startup-error.log"))
                .arg("-c")
                .arg(tmp.path().join("nginx.conf")),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "nginx -t rejects {rel}:\n{err}");
        assert!(err.contains("test is successful"), "{rel}: {err}");
        assert!(!err.contains("[warn]"), "{rel}: nginx warns:\n{err}");
    }
    // Host routing by name for the three infrastructure UIs.
    let host = read(&ds().join(confs[0]));
    for (name, upstream) in [
        ("registry.macula.local", "http://registry-proxy:80"),
        ("dns.macula.local", "http://pdns:8081"),
        ("dns-admin.macula.local", "http://pdns-admin:80"),
    ] {
        let block = host
            .split("server {")
            .find(|b| b.contains(&format!("server_name {name};")))
            .unwrap_or_else(|| panic!("no server block for {name}"));
        assert!(block.contains(upstream), "{name} must proxy to {upstream}");
    }
    let proxy = read(&ds().join(confs[1]));
    for needle in [
        "client_max_body_size 0;",
        "Access-Control-Allow-Origin",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "http://registry:5000",
        "http://registry-ui:80",
    ] {
        assert!(proxy.contains(needle), "registry proxy lacks {needle}");
    }
}

// ------------------------------------------------------------- prometheus ---

#[test]
fn promtool_accepts_prometheus_config_and_flags() {
    let cfg = ds().join("stacks/observability/prometheus/prometheus.yml");
    let out = run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&cfg),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let prom = yaml_file(&cfg);
    let jobs: BTreeMap<String, Vec<String>> = prom
        .key("scrape_configs")
        .arr()
        .iter()
        .map(|j| {
            let targets = j
                .key("static_configs")
                .arr()
                .iter()
                .flat_map(|s| s.key("targets").arr().iter().map(J::text))
                .collect();
            (j.key("job_name").text(), targets)
        })
        .collect();
    for job in ["prometheus", "macula-gitops", "registry", "minio"] {
        assert!(jobs.contains_key(job), "no scrape job {job}: {jobs:?}");
    }
    assert_eq!(jobs["minio"], ["minio:9000"]);
    let compose = compose_config("observability");
    let cmd: Vec<String> = compose
        .at("services.prometheus.command")
        .arr()
        .iter()
        .map(J::text)
        .collect();
    for flag in [
        "--storage.tsdb.retention.time=30d",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
        "--web.enable-remote-write-receiver",
    ] {
        assert!(
            cmd.iter().any(|c| c == flag),
            "prometheus lacks {flag}: {cmd:?}"
        );
    }
    // The registry target is the debug listener compose turns on.
    let infra = compose_config("infrastructure");
    assert_eq!(
        infra
            .at("services.registry.environment.REGISTRY_HTTP_DEBUG_ADDR")
            .text(),
        "0.0.0.0:5001"
    );
    assert_eq!(jobs["registry"], ["registry:5001"]);
    let data = compose_config("data");
    assert_eq!(
        data.at("services.minio.environment.MINIO_PROMETHEUS_AUTH_TYPE")
            .text(),
        "public"
    );
}

// ---------------------------------------------------------------- grafana ---

#[test]
fn grafana_provisioning_references_defined_datasources() {
    let graf = ds().join("stacks/observability/grafana");
    let dsf = yaml_file(&graf.join("provisioning/datasources/datasources.yml"));
    let mut uids: BTreeMap<String, (String, String)> = BTreeMap::new(); // uid -> (name, type)
    for d in dsf.key("datasources").arr() {
        uids.insert(
            d.key("uid").text(),
            (d.key("name").text(), d.key("type").text()),
        );
    }
    for (uid, name, ty) in [
        ("prometheus", "Prometheus", "prometheus"),
        ("loki", "Loki", "loki"),
        ("tempo", "Tempo", "tempo"),
    ] {
        assert_eq!(
            uids.get(uid),
            Some(&(name.to_string(), ty.to_string())),
            "datasource {uid}"
        );
    }
    // Every datasourceUid anywhere in jsonData points at a defined datasource.
    fn collect_uids(v: &J, out: &mut Vec<String>) {
        match v {
            J::Object(kv) => {
                for (k, x) in kv {
                    if k == "datasourceUid" || (k == "uid" && matches!(x, J::String(_))) {
                        out.push(x.text());
                    }
                    collect_uids(x, out);
                }
            }
            J::Array(a) => a.iter().for_each(|x| collect_uids(x, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    collect_uids(&dsf, &mut refs);
    for r in &refs {
        assert!(
            uids.contains_key(r),
            "datasources.yml references unknown uid {r}"
        );
    }
    let by_uid = |uid: &str| {
        dsf.key("datasources")
            .arr()
            .iter()
            .find(|d| d.key("uid").text() == uid)
            .unwrap()
            .clone()
    };
    let tempo = by_uid("tempo");
    assert_eq!(
        tempo.at("jsonData.tracesToLogsV2.datasourceUid").text(),
        "loki",
        "trace->log"
    );
    let loki = by_uid("loki");
    assert!(
        loki.at("jsonData.derivedFields")
            .arr()
            .iter()
            .any(|f| f.key("datasourceUid").text() == "tempo"),
        "log->trace link"
    );
    // Datasource URLs name services (and ports) the observability stack runs.
    let compose = compose_config("observability");
    for d in dsf.key("datasources").arr() {
        let url = d.key("url").text();
        let hostport = url.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = hostport.split_once(':').expect("url with port");
        let svc = compose.key("services").key(host);
        assert!(
            !svc.is_null(),
            "{url}: no service {host} in the observability stack"
        );
        let hc = svc
            .at("healthcheck.test")
            .arr()
            .iter()
            .map(J::text)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            hc.contains(&format!(":{port}/")),
            "{url}: {host} does not serve :{port}"
        );
    }
    // Dashboards provider reads where compose mounts the dashboards.
    let prov = yaml_file(&graf.join("provisioning/dashboards/dashboards.yml"));
    let path = prov.key("providers").arr()[0].at("options.path").text();
    let mounts: Vec<String> = compose
        .at("services.grafana.volumes")
        .arr()
        .iter()
        .map(J::text)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.contains("/grafana/dashboards:") && m.contains(&format!(":{path}"))),
        "dashboards path {path} not mounted: {mounts:?}"
    );
    assert!(mounts
        .iter()
        .any(|m| m.contains(":/etc/grafana/provisioning")));
    // Every dashboard parses and only uses defined datasource uids.
    let mut n = 0;
    for f in fs::read_dir(graf.join("dashboards")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        n += 1;
        let dash = parse_json(&read(&f));
        let mut used = Vec::new();
        fn ds_uids(v: &J, out: &mut Vec<String>) {
            match v {
                J::Object(kv) => {
                    for (k, x) in kv {
                        if k == "datasource" {
                            out.push(x.key("uid").text());
                        }
                        ds_uids(x, out);
                    }
                }
                J::Array(a) => a.iter().for_each(|x| ds_uids(x, out)),
                _ => {}
            }
        }
        ds_uids(&dash, &mut used);
        assert!(
            !used.is_empty(),
            "{}: no datasource references",
            f.display()
        );
        for u in used {
            assert!(
                uids.contains_key(&u),
                "{}: unknown datasource uid {u}",
                f.display()
            );
        }
        let exprs = format!("{dash:?}");
        assert!(
            exprs.contains("job=\\\"macula-gitops\\\""),
            "dashboard for the agent's metrics"
        );
    }
    assert!(n >= 1, "no dashboards");
    let env = compose.at("services.grafana.environment");
    assert_eq!(env.key("GF_AUTH_ANONYMOUS_ORG_ROLE").text(), "Admin");
    assert_eq!(
        env.key("GF_SECURITY_ADMIN_PASSWORD").text(),
        "macula-local-grafana"
    );
}

// --------------------------------------------------------------- powerdns ---

fn free_port() -> u16 {
    // Free for both TCP and UDP at the time of asking.
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (Debian package postgresql)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: drop to `postgres` when we are root.
fn as_pg(bin: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

struct Postgres {
    data: PathBuf,
    bin: PathBuf,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_pg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str, api_key: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {api_key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A minimal DNS A query; returns the first A record's address, if any.
fn dns_a(port: u16, name: &str) -> Option<[u8; 4]> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = vec![0x4d, 0x47, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let r = &buf[..n];
    let ancount = u16::from_be_bytes([r[6], r[7]]);
    if r[3] & 0x0f != 0 || ancount == 0 {
        return None;
    }
    // Skip the question, then walk answers (names are compressed pointers).
    let mut i = q.len();
    for _ in 0..ancount {
        while r[i] != 0 && r[i] & 0xc0 != 0xc0 {
            i += r[i] as usize + 1;
        }
        i += if r[i] == 0 { 1 } else { 2 };
        let ty = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if ty == 1 && len == 4 {
            return Some([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        }
        i += len;
    }
    None
}

/// The repo's pdns.conf (gpgsql backend) against a real, throwaway PostgreSQL
/// initialised with the same SQL files compose mounts into dns-postgres. Only
/// connection settings, listen ports and secrets (which compose passes as
/// flags) are overridden. Debian ships PowerDNS 4.7; the stack runs 4.8, whose
/// gpgsql settings and schema are the same.
#[test]
fn powerdns_config_runs_with_gpgsql_backend_and_dnssec() {
    let tmp = TempDir::new("pdns");
    let root = tmp.path();
    let pgdir = root.join("pg");
    let sock = root.join("pgsock");
    let pdnsdir = root.join("pdns");
    fs::create_dir_all(&pgdir).unwrap();
    fs::create_dir_all(&sock).unwrap();
    fs::create_dir_all(&pdnsdir).unwrap();
    if is_root() {
        run_ok(Command::new("chmod").arg("755").arg(root));
        run_ok(Command::new("chown").arg("postgres").arg(&pgdir).arg(&sock));
    }
    let bin = pg_bin();
    let pgport = free_port();
    run_ok(
        as_pg(bin.join("initdb"))
            .arg("-D")
            .arg(pgdir.join("data"))
            .args(["-U", "pdns", "--auth=trust", "-E", "UTF8"]),
    );
    run_ok(
        as_pg(bin.join("pg_ctl"))
            .arg("-D")
            .arg(pgdir.join("data"))
            .arg("-o")
            .arg(format!(
                "-k {} -c listen_addresses= -p {pgport}",
                sock.display()
            ))
            .arg("-l")
            .arg(pgdir.join("log"))
            .args(["-w", "start"]),
    );
    let _pg = Postgres {
        data: pgdir.join("data"),
        bin: bin.clone(),
    };
    let psql = |db: &str, file: &Path| {
        run_ok(
            as_pg(bin.join("psql"))
                .arg("-h")
                .arg(&sock)
                .args([
                    "-p",
                    &pgport.to_string(),
                    "-U",
                    "pdns",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                    "-f",
                ])
                .arg(file),
        )
    };
    // Same order and database as the postgres image's initdb.d in compose.
    run_ok(as_pg(bin.join("createdb")).arg("-h").arg(&sock).args([
        "-p",
        &pgport.to_string(),
        "-U",
        "pdns",
        "pdns",
    ]));
    let sqldir = ds().join("stacks/infrastructure/powerdns");
    for f in [
        "01-schema.sql",
        "02-powerdns-admin.sql",
        "03-zone-macula-local.sql",
    ] {
        psql("pdns", &sqldir.join(f));
    }

    let dnsport = free_port();
    let apiport = free_port();
    let key = "content-test-key";
    let conf = read(&sqldir.join("pdns.conf"));
    assert!(
        conf.lines().any(|l| l.trim() == "launch=gpgsql"),
        "pdns.conf must launch gpgsql"
    );
    for must in [
        "api=yes",
        "webserver-port=8081",
        "log-dns-queries=yes",
        "gpgsql-dnssec=yes",
    ] {
        assert!(
            conf.lines().any(|l| l.trim() == must),
            "pdns.conf lacks {must}"
        );
    }
    assert!(
        !conf.contains("api-key="),
        "the API key comes from .env, not the file"
    );
    // Later settings win in pdns.conf: append the test's connection/ports.
    let overrides = format!(
        "\n# --- test overrides ---\ngpgsql-host={}\ngpgsql-port={pgport}\ngpgsql-password=unused\nlocal-address=127.0.0.1\nlocal-port={dnsport}\nwebserver-address=127.0.0.1\nwebserver-port={apiport}\napi-key={key}\nsocket-dir={}\n",
        sock.display(),
        pdnsdir.display()
    );
    fs::write(pdnsdir.join("pdns.conf"), format!("{conf}{overrides}")).unwrap();

    let pdnsutil = |args: &[&str]| {
        run_ok(
            Command::new("pdnsutil")
                .arg(format!("--config-dir={}", pdnsdir.display()))
                .args(args),
        )
    };
    // DNSSEC through the gpgsql backend: sign the seeded zone.
    pdnsutil(&["secure-zone", "macula.local"]);
    let check = pdnsutil(&["check-zone", "macula.local"]);
    assert!(check.contains("0 errors"), "{check}");
    pdnsutil(&[
        "add-record",
        "macula.local",
        "grafana",
        "A",
        "60",
        "127.0.0.4",
    ]);

    let server = Command::new("pdns_server")
        .arg(format!("--config-dir={}", pdnsdir.display()))
        .args(["--daemon=no", "--guardian=no", "--disable-syslog=yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pdns_server");
    let mut server = Killed(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", apiport)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            server
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("pdns_server exited ({status}) with the repo config:\n{err}");
        }
        assert!(Instant::now() < deadline, "pdns_server API did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let zone = http_get(
        apiport,
        "/api/v1/servers/localhost/zones/macula.local.",
        key,
    );
    assert!(
        zone.starts_with("HTTP/1.1 200") || zone.starts_with("HTTP/1.0 200"),
        "{zone}"
    );
    assert!(
        zone.contains("\"dnssec\": true") || zone.contains("\"dnssec\":true"),
        "{zone}"
    );
    assert!(zone.contains("ns1.macula.local."), "seeded SOA/NS: {zone}");
    let denied = http_get(apiport, "/api/v1/servers/localhost/zones", "wrong-key");
    assert!(
        denied.contains(" 401 "),
        "API must require the key: {denied}"
    );
    assert_eq!(dns_a(dnsport, "grafana.macula.local"), Some([127, 0, 0, 4]));
    assert_eq!(dns_a(dnsport, "ns1.macula.local"), Some([127, 0, 0, 1]));
}

// ---------------------------------------------------- routing and clusters ---

#[test]
fn routing_hosts_and_clusters_follow_the_approved_plan() {
    let routing = yaml_file(&ds().join("routing.yaml"));
    let plan: Vec<(String, String)> = routing
        .key("loopback")
        .arr()
        .iter()
        .map(|l| (l.key("address").text(), l.key("name").text()))
        .collect();
    let want = [
        ("127.0.0.1", "host-nginx"),
        ("127.0.0.2", "kind-ingress"),
        ("127.0.0.3", "prometheus"),
        ("127.0.0.4", "grafana"),
        ("127.0.0.5", "loki"),
        ("127.0.0.6", "tempo"),
        ("127.0.0.7", "excalidraw"),
        ("127.0.0.8", "timescaledb"),
        ("127.0.0.9", "minio"),
    ];
    assert_eq!(plan, want.map(|(a, n)| (a.to_string(), n.to_string())));

    let names: BTreeMap<String, String> = routing
        .at("dns.names")
        .obj()
        .iter()
        .map(|(k, v)| (k.clone(), v.text()))
        .collect();
    assert_eq!(routing.at("dns.zone").text(), "macula.local");
    for (n, addr) in [
        ("registry", "127.0.0.1"),
        ("dns", "127.0.0.1"),
        ("dns-admin", "127.0.0.1"),
        ("prometheus", "127.0.0.3"),
        ("grafana", "127.0.0.4"),
        ("loki", "127.0.0.5"),
        ("tempo", "127.0.0.6"),
        ("draw", "127.0.0.7"),
        ("postgres", "127.0.0.8"),
        ("s3", "127.0.0.9"),
        ("s3-console", "127.0.0.9"),
        ("console", "127.0.0.2"),
        ("bootstrap", "127.0.0.2"),
        ("peer1", "127.0.0.2"),
        ("peer2", "127.0.0.2"),
    ] {
        assert_eq!(
            names.get(&format!("{n}.macula.local")).map(String::as_str),
            Some(addr),
            "{n}.macula.local"
        );
    }
    let be = routing.at("dns.backends");
    for b in ["hosts", "dnsmasq", "powerdns"] {
        assert!(!be.key(b).is_null(), "DNS backend {b}");
    }
    assert_eq!(be.at("powerdns.api_key").text(), "${PDNS_API_KEY}");

    // Stacks as the agent will see them.
    let stacks: BTreeMap<&str, J> = STACKS.iter().map(|s| (*s, compose_config(s))).collect();
    let mut taken: BTreeMap<(String, u16, String), String> = BTreeMap::new();
    for (s, cfg) in &stacks {
        for (k, who) in published(s, cfg) {
            taken.insert(k, who);
        }
    }
    let pdns_url = be.at("powerdns.url").text();
    let pdns_port: u16 = pdns_url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        taken
            .get(&("127.0.0.1".into(), pdns_port, "tcp".into()))
            .map(String::as_str),
        Some("infrastructure/pdns"),
        "routing's PowerDNS URL must be what compose publishes"
    );
    let mut wildcard_ports = BTreeSet::new();
    for f in routing.key("forwards").arr() {
        let name = f.key("name").text();
        let listen = f.key("listen").text();
        let (addr, proto) = listen.split_once('/').expect("listen ip:port/proto");
        let (ip, port) = addr.rsplit_once(':').unwrap();
        let key = (
            ip.to_string(),
            port.parse::<u16>().unwrap(),
            proto.to_string(),
        );
        if ip == "0.0.0.0" {
            wildcard_ports.insert((key.1, key.2.clone()));
        }
        if let Some(prev) = taken.insert(key.clone(), format!("forward {name}")) {
            panic!("forward {name} listens on {key:?}, already used by {prev}");
        }
        let t = f.key("target");
        if !t.key("service").is_null() {
            let (stack, svc) = t
                .key("service")
                .text()
                .split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap();
            let s = stacks[stack.as_str()].key("services").key(&svc);
            assert!(!s.is_null(), "forward {name}: no service {stack}/{svc}");
            let port = t.key("port").text();
            let uses = s.key("ports").arr().iter().any(|p| {
                let t = p.text();
                let a = t.split('/').next().unwrap();
                a.rsplit(':').next() == Some(port.as_str())
            });
            assert!(
                uses,
                "forward {name}: {stack}/{svc} does not use container port {port}"
            );
        }
    }
    for ((_, port, proto), who) in &taken {
        if wildcard_ports.contains(&(*port, proto.clone())) {
            assert!(
                who.starts_with("forward"),
                "{who} clashes with a 0.0.0.0 forward on {port}"
            );
        }
    }

    let hosts = yaml_file(&ds().join("hosts.yaml"));
    let all: Vec<String> = STACKS.iter().map(|s| s.to_string()).collect();
    for (profile, clusters) in [
        ("dev", vec!["macula-dev"]),
        (
            "lab",
            vec!["macula-hub", "be-antwerp", "be-brabant", "be-east-flanders"],
        ),
    ] {
        let p = hosts.at(&format!("profiles.{profile}"));
        let st: Vec<String> = p.key("stacks").arr().iter().map(J::text).collect();
        assert_eq!(st, all, "{profile} stacks");
        assert_eq!(p.key("routing"), &J::Bool(true));
        let cl: Vec<String> = p.key("clusters").arr().iter().map(J::text).collect();
        assert_eq!(cl, clusters, "{profile} clusters");
        assert_eq!(
            hosts.at(&format!("hosts.{profile}.profile")).text(),
            profile
        );
    }
    assert!(!hosts.at("hosts.default.profile").is_null());

    let clusters = yaml_file(&ds().join("clusters.yaml"));
    assert_eq!(
        clusters.at("registry.service").text(),
        "infrastructure/registry"
    );
    assert_eq!(clusters.at("registry.host").text(), "localhost:5001");
    assert_eq!(clusters.at("registry.cluster").text(), "kind-registry:5000");
    // No pin: the agent verifies install.yaml against the release's checksums file. The node
    // image carries the digest kind's release notes list for it.
    assert!(clusters.at("flux.sha256").is_null());
    assert_eq!(clusters.at("flux.version").text(), "v2.9.5");
    for (name, c) in clusters.key("clusters").obj() {
        let image = c.key("image").text();
        let (_, digest) = image
            .split_once("@sha256:")
            .expect("image pinned by digest");
        assert_eq!(digest.len(), 64, "{name}: {image}");
    }
    let published_ports: BTreeSet<u16> = taken.keys().map(|k| k.1).collect();
    let mut host_ports: BTreeMap<(u16, String), String> = BTreeMap::new();
    for (name, c) in clusters.key("clusters").obj() {
        assert_eq!(c.at("flux.path").text(), format!("./clusters/{name}"));
        assert!(
            repo().join("clusters").join(name).is_dir(),
            "clusters/{name} missing"
        );
        for node in c.key("nodes").arr() {
            for m in node.key("extraPortMappings").arr() {
                let hp: u16 = m.key("hostPort").text().parse().unwrap();
                let proto = m.key("protocol").text();
                // kind binds 0.0.0.0: any publish on that port number clashes.
                assert!(
                    !published_ports.contains(&hp),
                    "{name}: hostPort {hp} clashes with the host stacks/forwards"
                );
                if let Some(prev) = host_ports.insert((hp, proto.clone()), name.clone()) {
                    panic!("hostPort {hp}/{proto} used by {prev} and {name}");
                }
            }
        }
    }
    let listed: BTreeSet<&str> = clusters
        .key("clusters")
        .obj()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(listed, CLUSTERS.iter().copied().collect());
    // The dev ingress forwards land on the kind host ports.
    for f in routing.key("forwards").arr() {
        if let Some(addr) = f.at("target.address").str() {
            let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                host_ports.keys().any(|(p, _)| *p == port),
                "forward target {addr} is no kind hostPort"
            );
        }
    }
}

// ------------------------------------------------------------------- docs ---

#[test]
fn services_doc_lists_every_service_url_and_image() {
    let doc = read(&repo().join("README.md"));
    for stack in STACKS {
        let cfg = compose_config(stack);
        for (name, s) in cfg.key("services").obj() {
            assert!(
                doc.contains(&format!("macula-{name}")),
                "README.md lacks macula-{name}"
            );
            let image = s.key("image").text();
            assert!(doc.contains(&image), "README.md lacks image {image}");
        }
    }
    let routing = yaml_file(&ds().join("routing.yaml"));
    for (name, _) in routing.at("dns.names").obj() {
        // http://name… or, for PostgreSQL, postgres://user@name…
        assert!(
            doc.contains(&format!("//{name}")) || doc.contains(&format!("@{name}")),
            "README.md lacks a URL for {name}"
        );
    }
    for image in PUBLIC_CLUSTER_IMAGES {
        assert!(doc.contains(image), "README.md lacks cluster image {image}");
    }
    assert!(doc.contains(
        "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"
    ));
}

// ---------------------------------------------------------- agent validate ---

/// The agent's own `validate` on every host profile. A fresh checkout has no
/// `desired-state/.env`; the variables of `.env.example` are passed in the
/// process environment instead (the stacks use `${VAR:?}` for secrets).
#[test]
fn validate_every_host_profile() {
    let vars: Vec<(String, String)> = read(&ds().join(".env.example"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(!vars.is_empty());
    for host in ["dev", "lab"] {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_macula-gitops"))
                .args(["validate", "--host", host, "--desired-state"])
                .arg(ds())
                .envs(vars.iter().map(|(k, v)| (k, v))),
        );
    }
}
