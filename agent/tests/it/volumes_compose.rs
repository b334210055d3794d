//! Volumes kept as docker compose keeps them, and the compose ecosystem seeing the agent's
//! stacks — on the real engine and with Debian's docker-compose 1.29: anonymous and image
//! `VOLUME`s carried over across recreates (none left dangling, pruned only with
//! `--prune-volumes`), and `docker-compose -p <stack> ps/logs` reading an agent-applied stack.
use std::process::Command;

use crate::support::docker::{docker, docker_compose, Cleanup};
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

/// Remove a container and every volume it mounts (carried-over volumes were passed by name, so
/// `rm -v` alone leaves them).
fn remove_with_volumes(container: &str) {
    let names: Vec<String> = volumes_of(container)
        .iter()
        .filter_map(|m| m.split_once('=').map(|(_, n)| n.to_string()))
        .collect();
    let _ = docker(&["rm", "-f", "-v", container]);
    for n in names {
        let _ = docker(&["volume", "rm", &n]);
    }
}

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
    volumes: ["data:/data"]
  back:
    image: {image}
    command: sleep 3600
    networks: [default, back]
networks:
  back: {}
volumes:
  data: {}
"#;

/// The labels of a network or volume with its project's name made `P`, without the agent's
/// own labels and the tool's version (which says which tool made it).
fn resource_labels(
    kind: &str,
    name: &str,
    project: &str,
) -> std::collections::BTreeMap<String, String> {
    let json = docker(&[kind, "inspect", "-f", "{{json .Labels}}", name]);
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{kind} {name}: {e}: {json:?}"));
    labels
        .into_iter()
        .filter(|(k, _)| !k.starts_with("io.macula.gitops."))
        .map(|(k, v)| {
            let v = if k == "com.docker.compose.version" {
                "V".to_string()
            } else {
                v.replace(project, "P")
            };
            (k, v)
        })
        .collect()
}

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
    let compose = |args: &[&str]| docker_compose(&stack, &file, args).0;
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

    // Networks and volumes carry the labels docker-compose writes for the same file.
    let twin = format!("{stack}c");
    let mut cleanup = Cleanup::default();
    cleanup.label("com.docker.compose.project", &twin);
    docker_compose(&twin, &file, &["up", "-d"]);
    for (kind, key) in [
        ("network", "default"),
        ("network", "back"),
        ("volume", "data"),
    ] {
        let agent = resource_labels(kind, &format!("{stack}_{key}"), &stack);
        let compose = resource_labels(kind, &format!("{twin}_{key}"), &twin);
        assert_eq!(agent, compose, "{kind} {key}");
        assert!(
            agent.contains_key("com.docker.compose.project"),
            "{kind} {key}: {agent:?}"
        );
    }
    // docker-compose takes the agent's networks and volumes as its project's own: `up` creates
    // none beside them and leaves the agent's containers as they are.
    let (_, err) = docker_compose(&stack, &file, &["up", "-d", "--no-recreate"]);
    assert!(!err.contains("Creating"), "{err}");
    assert!(f.ok("h", &["diff"]).contains("no changes"));
}

const RUNNING: &str = r#"
services:
  db:
    image: {image}
    command: sleep 3600
    volumes: ["data:/data", "/cache"]
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
"#;

#[test]
fn a_stack_docker_compose_runs_is_adopted_with_its_data() {
    let f = Fixture::new();
    let stack = format!("t{}ad", f.id);
    let mut cleanup = Cleanup::default();
    cleanup.label("com.docker.compose.project", &stack);
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [{stack}]}}\n"),
    );
    f.write(&format!("stacks/{stack}/compose.yaml"), &f.fill(RUNNING));
    let file = f.root().join("stacks").join(&stack).join("compose.yaml");
    docker_compose(&stack, &file, &["up", "-d"]);
    let v1 = format!("{stack}_db_1");
    docker(&[
        "exec",
        &v1,
        "sh",
        "-c",
        "echo named > /data/n && echo anon > /cache/a",
    ]);

    let diff = f.ok("h", &["diff"]);
    assert!(
        diff.contains(&format!("~ adopt {v1} ({stack}/db): run by docker compose; replaced by {stack}-db-1 with its volumes")),
        "{diff}"
    );
    assert!(
        !diff.contains("+ volume") && !diff.contains("+ network"),
        "the compose volume and network are reused: {diff}"
    );
    let network = format!("{stack}_back");
    let network_id = docker(&["network", "inspect", "-f", "{{.Id}}", &network]);
    f.ok("h", &["apply"]);
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Id}}", &network]),
        network_id,
        "the compose network is kept, not recreated"
    );
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "-f",
            &format!("label=com.docker.compose.project={stack}")
        ])
        .lines()
        .count(),
        1,
        "no second network beside compose's"
    );
    let per_service = docker(&[
        "ps",
        "-a",
        "-q",
        "-f",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    assert_eq!(
        per_service.lines().count(),
        1,
        "one container per service: {per_service}"
    );
    let agent = format!("{stack}-db-1");
    assert_eq!(
        docker(&["exec", &agent, "cat", "/data/n", "/cache/a"]),
        "named\nanon"
    );
    assert!(f.ok("h", &["diff"]).contains("no changes"));
    // The volume compose made stays (it is not the agent's to prune).
    remove_with_volumes(&agent);
}

const EVERYTHING: &str = r#"
services:
  db:
    image: {vol_image}
    container_name: t{id}-db
    command: sleep 3600
    environment: {REV: "0"}
    volumes: ["named:/named", "/anon", "./data:/data", "./conf.txt:/conf.txt:ro"]
volumes:
  named: {name: "t{id}-named"}
"#;

/// Nothing a container wrote is lost across recreates, new revisions, agent restarts (every
/// `apply` is a fresh agent process) and a deleted state dir.
#[test]
fn nothing_written_is_lost_across_revisions_restarts_and_a_deleted_state_dir() {
    let f = Fixture::new();
    let mut cleanup = Cleanup::default();
    let img = image_with_volume(&f, &mut cleanup);
    let db = f.name("db");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    let rev = |n: u32| {
        f.write(
            "stacks/s/compose.yaml",
            &f.fill(EVERYTHING)
                .replace("{vol_image}", &img)
                .replace("REV: \"0\"", &format!("REV: \"{n}\"")),
        );
        f.write("stacks/s/conf.txt", &format!("conf {n}\n"));
        f.write("stacks/s/data/seed", &format!("seed {n}\n"));
    };
    rev(0);
    f.ok("h", &["apply"]);
    let write = "for d in named anon data imgdata; do echo kept >> /$d/w; done";
    docker(&["exec", "-u", "0", &db, "sh", "-c", write]);
    let read = || {
        docker(&[
            "exec",
            &db,
            "sh",
            "-c",
            "cat /named/w /anon/w /data/w /imgdata/w /data/seed /conf.txt",
        ])
    };
    for n in 1..=2 {
        rev(n);
        f.ok("h", &["apply"]);
        assert_eq!(
            read(),
            format!("kept\nkept\nkept\nkept\nseed 0\nconf {n}"),
            "revision {n}"
        );
    }
    // The state dir is wiped (snapshots, copies, applied state): the next pass rebuilds it.
    std::fs::remove_dir_all(f.state.path()).expect("delete state dir");
    rev(3);
    f.ok("h", &["apply"]);
    assert_eq!(read(), "kept\nkept\nkept\nkept\nseed 0\nconf 3");
    remove_with_volumes(&db);
}

/// A trap that notes SIGTERM in the volume: a graceful stop leaves `stopped-<N>` behind.
const GRACEFUL: &str = r#"
services:
  db:
    image: {image}
    container_name: t{id}-db
    stop_signal: SIGTERM
    stop_grace_period: 30s
    command: ["sh", "-c", "trap 'echo stopped-$$N >> /data/log; exit 0' TERM; echo started-$$N >> /data/log; while :; do sleep 1; done"]
    environment: {N: "N_VALUE"}
    volumes: ["data:/data"]
volumes:
  data: {name: "t{id}-graceful"}
"#;

/// A recreate stops the old container as docker compose does — its `stop_signal`, then its
/// `stop_grace_period` to finish — before removing it; a forced removal alone would SIGKILL it
/// and a database would lose what it had not flushed.
#[test]
fn a_recreate_stops_the_old_container_gracefully_first() {
    let f = Fixture::new();
    let db = f.name("db");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    let rev = |n: &str| {
        f.write(
            "stacks/s/compose.yaml",
            &f.fill(GRACEFUL).replace("N_VALUE", n),
        );
    };
    rev("1");
    f.ok("h", &["apply"]);
    rev("2");
    let out = f.ok("h", &["apply"]);
    assert!(out.contains("0 failed"), "{out}");
    assert_eq!(
        docker(&["exec", &db, "cat", "/data/log"]),
        "started-1\nstopped-1\nstarted-2",
        "{out}"
    );
}
