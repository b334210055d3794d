//! App images: built by the real engine from a context directory, tagged by content, pushed
//! to a real registry (Debian's docker-registry) on 127.0.0.1; unchanged sources not rebuilt.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::docker::Sandbox;
use crate::support::{free_port, image, KillOnDrop};
use macula_gitops::cluster::docker::ClusterEngine;
use macula_gitops::cluster::images;
use macula_gitops::desired::interpolate::Env;

/// docker-registry on a free 127.0.0.1 port, killed on drop.
struct Registry {
    _server: KillOnDrop,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Self> {
        if !std::path::Path::new("/usr/bin/docker-registry").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n", dir.path().join("data").display()),
        )
        .unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Ready when it says it listens (no sleeps).
        let err = child.stderr.take().unwrap();
        let mut lines = BufReader::new(err).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Some(Self {
            _server: KillOnDrop(child),
            addr,
            _dir: dir,
        })
    }
}

fn tags(addr: &str, repo: &str) -> String {
    // The registry's HTTP API through busybox-free std: one GET over a TcpStream.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v2/{repo}/tags/list HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn build_push_and_skip_unchanged() {
    let Some(reg) = Registry::start() else {
        println!("skipped: /usr/bin/docker-registry not installed");
        return;
    };
    let mut g = Sandbox::new().await;
    let base = image::busybox().to_string();
    let repo = tempfile::tempdir().unwrap();
    let ctx = repo.path().join("apps/hello");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY hello.txt /hello.txt\n"),
    )
    .unwrap();
    std::fs::write(ctx.join("hello.txt"), "v1\n").unwrap();
    let name = format!("{}/hello", g.id);
    let yaml = repo.path().join("images.yaml");
    std::fs::write(
        &yaml,
        format!("images:\n  hello:\n    context: ./apps/hello\n    repository: {name}\n"),
    )
    .unwrap();
    let (file, d) = images::load(&yaml, &Env::default(), repo.path());
    assert!(d.is_empty(), "{d}");
    let file = file.unwrap();
    let engine = ClusterEngine::connect().await.unwrap();

    let mut lines = Vec::new();
    let r = images::build(
        &engine,
        &file,
        repo.path(),
        &reg.addr,
        &[],
        true,
        &mut |l| lines.push(l.to_string()),
    )
    .await;
    assert_eq!((r.tried, r.failed), (1, 0), "{r:?} {lines:#?}");
    let first = r.images[0].clone();
    g.cleanup.image(&first);
    let tag = first.rsplit(':').next().unwrap().to_string();
    assert!(tag.starts_with("src-") && tag.len() == 16, "{first}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(": COPY hello.txt /hello.txt")),
        "build progress shown: {lines:#?}"
    );
    assert!(
        tags(&reg.addr, &name).contains(&tag),
        "pushed to the registry"
    );

    // Unchanged source: same tag, not rebuilt.
    let mut lines = Vec::new();
    let r = images::build(
        &engine,
        &file,
        repo.path(),
        &reg.addr,
        &["hello".into()],
        false,
        &mut |l| lines.push(l.to_string()),
    )
    .await;
    assert_eq!(r.images, vec![first.clone()]);
    assert!(
        lines.iter().any(|l| l.ends_with("unchanged, not rebuilt")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("Step ")), "{lines:#?}");

    // Changed source: new tag, built and pushed.
    std::fs::write(ctx.join("hello.txt"), "v2\n").unwrap();
    let r = images::build(
        &engine,
        &file,
        repo.path(),
        &reg.addr,
        &[],
        true,
        &mut |_| {},
    )
    .await;
    let second = r.images[0].clone();
    g.cleanup.image(&second);
    assert_ne!(second, first);
    let listed = tags(&reg.addr, &name);
    assert!(
        listed.contains(&tag) && listed.contains(second.rsplit(':').next().unwrap()),
        "{listed}"
    );

    // Unknown names are errors, not silently skipped.
    let r = images::build(
        &engine,
        &file,
        repo.path(),
        &reg.addr,
        &["nope".into()],
        false,
        &mut |_| {},
    )
    .await;
    assert_eq!((r.tried, r.failed), (1, 1));
}

#[test]
fn contexts_outside_the_repo_need_permission() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let sibling = root.path().join("macula-console");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&sibling).unwrap();
    std::fs::write(sibling.join("Dockerfile"), "FROM scratch\n").unwrap();
    let yaml = repo.join("images.yaml");
    std::fs::write(
        &yaml,
        "images:\n  console:\n    context: ../macula-console\n    colour: red\n",
    )
    .unwrap();
    let (_, d) = images::load(&yaml, &Env::default(), &repo);
    let mut msgs: Vec<String> = d
        .into_sorted()
        .into_iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    msgs.sort();
    assert_eq!(
        msgs,
        [
            "images.console.colour: unknown key \"colour\" (supported: context, outside_repo, dockerfile, repository, target, build_args)",
            "images.console.context: \"../macula-console\" is outside the repo; set outside_repo: true to build a sibling repo",
        ]
    );
    std::fs::write(
        &yaml,
        "images:\n  console:\n    context: ../macula-console\n    outside_repo: true\n",
    )
    .unwrap();
    let (f, d) = images::load(&yaml, &Env::default(), &repo);
    assert!(d.is_empty(), "{d}");
    assert!(f.unwrap().images["console"].outside_repo);
}
