//! App images: built by the real engine from a context directory, tagged by content, pushed
//! to a real registry (Debian's docker-registry) on 127.0.0.1; unchanged sources not rebuilt.

use crate::support::cluster::registry::DockerRegistry;
use crate::support::docker::Sandbox;
use crate::support::image;
use macula_gitops::cluster::docker::ClusterEngine;
use macula_gitops::cluster::images;
use macula_gitops::desired::interpolate::Env;

#[tokio::test]
async fn build_push_and_skip_unchanged() {
    let Some(reg) = DockerRegistry::start() else {
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
    assert!(reg.tags(&name).contains(&tag), "pushed to the registry");

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
    let listed = reg.tags(&name);
    assert!(
        listed.contains(&tag) && listed.contains(&second.rsplit(':').next().unwrap().to_string()),
        "{listed:?}"
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
