//! Volumes kept as docker compose keeps them, and the compose ecosystem seeing the agent's
//! stacks — on the real engine and with Debian's docker-compose 1.29: anonymous and image
//! `VOLUME`s carried over across recreates (none left dangling, pruned only with
//! `--prune-volumes`), and `docker-compose -p <stack> ps/logs` reading an agent-applied stack.
use std::process::Command;

use crate::support::docker::{docker, Cleanup};
use crate::support::fixture::Fixture;
use crate::support::image;

/// `<busybox>` + `VOLUME /imgdata`, tagged for this test.
fn image_with_volume(f: &Fixture, cleanup: &mut Cleanup) -> String {
    let tag = format!("{}:1", f.name("vol"));
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}\nVOLUME /imgdata\n", image::busybox()),
    )
    .expect("write Dockerfile");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(ctx.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cleanup.image(&tag);
    tag
}

const SERVICE: &str = r#"
services:
  db:
    image: {vol_image}
    container_name: t{id}-db
    command: sleep 3600
    environment: {N: "0"}
    volumes: ["/cache"]
"#;

/// The volumes a container mounts, `target=name`, sorted.
fn volumes_of(container: &str) -> Vec<String> {
    let mut v: Vec<String> = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}",
        container,
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

#[test]
fn anonymous_and_image_volumes_survive_recreates_and_go_only_with_prune_volumes() {
    let f = Fixture::new();
    let mut cleanup = Cleanup::default();
    let img = image_with_volume(&f, &mut cleanup);
    let db = f.name("db");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    let compose = |n: u32| {
        f.fill(SERVICE)
            .replace("{vol_image}", &img)
            .replace("N: \"0\"", &format!("N: \"{n}\""))
    };
    f.write("stacks/s/compose.yaml", &compose(0));
    f.ok("h", &["apply"]);
    docker(&[
        "exec",
        &db,
        "sh",
        "-c",
        "echo cached > /cache/a && echo img > /imgdata/b",
    ]);
    let first = volumes_of(&db);
    assert_eq!(first.len(), 2, "{first:?}");

    for n in 1..=3 {
        f.write("stacks/s/compose.yaml", &compose(n));
        let out = f.ok("h", &["apply"]);
        assert!(out.contains("recreate"), "{out}");
        assert_eq!(
            docker(&["exec", &db, "cat", "/cache/a", "/imgdata/b"]),
            "cached\nimg"
        );
        // The same volumes, so none was created and left behind by a recreate.
        assert_eq!(volumes_of(&db), first, "after recreate {n}");
    }

    // The service goes away: without --prune-volumes its anonymous volumes stay, with it they go.
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [other]}\n");
    f.write(
        "stacks/other/compose.yaml",
        &f.fill("services:\n  o:\n    image: {image}\n    container_name: t{id}-o\n    command: sleep 3600\n"),
    );
    let names: Vec<&str> = first
        .iter()
        .filter_map(|m| m.split_once('='))
        .map(|(_, n)| n)
        .collect();
    f.ok("h", &["apply", "--prune-volumes"]);
    for n in &names {
        assert!(
            docker(&["volume", "inspect", "-f", "{{.Name}}", n]).is_empty(),
            "{n} left dangling"
        );
    }
}

const WEB: &str = r#"
services:
  web:
    image: {image}
    command: sh -c "echo hello-from-web && sleep 3600"
"#;

#[test]
fn docker_compose_1_29_sees_an_agent_applied_stack() {
    let f = Fixture::new();
    let stack = format!("t{}web", f.id);
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [{stack}]}}\n"),
    );
    let file = f.root().join("stacks").join(&stack).join("compose.yaml");
    f.write(&format!("stacks/{stack}/compose.yaml"), &f.fill(WEB));
    f.ok("h", &["apply"]);
    let container = format!("{stack}-web-1");
    let compose = |args: &[&str]| {
        let o = Command::new("docker-compose")
            .args(["-p", &stack, "-f"])
            .arg(&file)
            .args(args)
            .output()
            .expect("docker-compose runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ps = compose(&["ps"]);
    assert!(ps.contains(&container) && ps.contains("Up"), "{ps}");
    crate::support::wait_until(std::time::Duration::from_secs(10), "compose logs", || {
        compose(&["logs", "--no-color", "web"]).contains("hello-from-web")
    });
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &container]);
    for want in [
        format!("\"com.docker.compose.project\":\"{stack}\""),
        "\"com.docker.compose.service\":\"web\"".into(),
        "\"com.docker.compose.oneoff\":\"False\"".into(),
        "\"com.docker.compose.container-number\":\"1\"".into(),
        format!(
            "\"com.docker.compose.project.config_files\":\"{}\"",
            file.canonicalize().expect("file").display()
        ),
    ] {
        assert!(labels.contains(&want), "missing {want} in {labels}");
    }
    // The agent's own second pass sees a converged host.
    assert!(f.ok("h", &["diff"]).contains("no changes"));
}
