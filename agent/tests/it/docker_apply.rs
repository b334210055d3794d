//! Apply against the real Docker engine: cold start, no-op, targeted recreate, prune.
use std::time::Duration;

use crate::support::docker::{container_id, container_state, docker};
use crate::support::fixture::Fixture;
use crate::support::wait_until;

const DATA: &str = r#"
services:
  db:
    image: {image}
    container_name: t{id}-db
    command: sh -c "mkdir -p /data/www && echo db > /data/www/index.html && httpd -f -p 8080 -h /data/www"
    volumes: [data:/data]
    healthcheck: {test: [CMD, wget, -q, -O-, "http://127.0.0.1:8080/"], interval: 1s, retries: 20}
    networks: {infra: {ipv4_address: "{net}.10"}}
    restart: unless-stopped
networks:
  infra:
    name: t{id}-infra
    ipam: {config: [{subnet: "{net}.0/24"}]}
volumes:
  data: {name: t{id}-data}
"#;

const WEB: &str = r#"
name: t{id}
services:
  init:
    image: {image}
    container_name: t{id}-init
    command: [sh, -c, "exit 0"]
    networks: [infra]
  api:
    image: {image}
    container_name: t{id}-api
    command: sh -c "mkdir -p /w && echo $$MODE > /w/index.html && httpd -f -p 8080 -h /w"
    environment: {MODE: one}
    healthcheck: {test: "wget -q -O- http://127.0.0.1:8080/", interval: 1s, retries: 20}
    networks: {infra: {ipv4_address: "{net}.11", aliases: [backend]}}
    restart: unless-stopped
  web:
    image: {image}
    container_name: t{id}-web
    # Fails at once if api is not up yet: proves the depends_on conditions were waited on.
    command: sh -c "wget -q -O /dev/null http://backend:8080/ && httpd -f -p 80 -h /site"
    volumes: ["./site:/site:ro"]
    networks: [infra]
    depends_on:
      api: {condition: service_healthy}
      init: {condition: service_completed_successfully}
networks:
  infra: {name: t{id}-infra, external: true}
"#;

fn setup(f: &Fixture) {
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [data, web]}\n");
    f.write("stacks/data/compose.yaml", &f.fill(DATA));
    f.write("stacks/web/compose.yaml", &f.fill(WEB));
    f.write("stacks/web/site/index.html", "hello v1\n");
}

fn fetch(f: &Fixture, from: &str, url: &str) -> String {
    docker(&["exec", &f.name(from), "wget", "-q", "-O-", url])
}

#[test]
fn cold_apply_then_noop_then_targeted_recreate_then_prune_keeps_volume() {
    let f = Fixture::new();
    setup(&f);

    // Cold start: networks with static IPs, the volume, every container, in dependency order.
    let out = f.ok("a", &["apply"]);
    assert!(out.contains("0 failed"), "{out}");
    for svc in ["db", "api", "web"] {
        assert_eq!(container_state(&f.name(svc)), "running", "{svc}");
    }
    assert_eq!(container_state(&f.name("init")), "exited");
    let ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            f.name("infra")
        ),
        &f.name("api"),
    ]);
    assert_eq!(ip, format!("{}.11", f.subnet_prefix()));
    assert_eq!(
        fetch(&f, "web", &format!("http://{}.10:8080/", f.subnet_prefix())),
        "db"
    );
    assert_eq!(
        fetch(&f, "web", "http://127.0.0.1:80/index.html"),
        "hello v1"
    );

    // No-op: nothing recreated, nothing tried, diff says so with exit 0.
    let ids: Vec<String> = ["db", "api", "web"]
        .iter()
        .map(|s| container_id(&f.name(s)))
        .collect();
    let out = f.ok("a", &["apply"]);
    assert!(out.contains("0 failed, 0 tried"), "{out}");
    f.ok("a", &["diff", "--exit-code"]);
    let after: Vec<String> = ["db", "api", "web"]
        .iter()
        .map(|s| container_id(&f.name(s)))
        .collect();
    assert_eq!(ids, after);

    // Env change: only api is recreated, and diff says why.
    f.write(
        "stacks/web/compose.yaml",
        &f.fill(WEB).replace("MODE: one", "MODE: two"),
    );
    let d = f.run("a", &["diff", "--exit-code"]);
    assert_eq!(d.status.code(), Some(2));
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(
        text.contains(&format!(
            "~ container {} (web/api): recreate, environment changed",
            f.name("api")
        )),
        "{text}"
    );
    f.ok("a", &["apply"]);
    assert_ne!(container_id(&f.name("api")), ids[1]);
    assert_eq!(container_id(&f.name("db")), ids[0]);
    assert_eq!(container_id(&f.name("web")), ids[2]);
    assert_eq!(fetch(&f, "web", "http://backend:8080/"), "two");

    // Editing a bind-mounted file recreates only the service that mounts it.
    let api_id = container_id(&f.name("api"));
    f.write("stacks/web/site/index.html", "hello v2\n");
    let json = f.ok("a", &["diff", "--output", "json"]);
    assert!(
        json.contains("\"recreate_container\"") && json.contains("file stacks/web/site changed"),
        "{json}"
    );
    f.ok("a", &["apply"]);
    assert_eq!(
        fetch(&f, "web", "http://127.0.0.1:80/index.html"),
        "hello v2"
    );
    assert_ne!(container_id(&f.name("web")), ids[2]);
    assert_eq!(container_id(&f.name("api")), api_id);
    assert_eq!(container_id(&f.name("db")), ids[0]);

    // Removing a service (and its volume declaration) prunes the container, never the volume.
    f.write("stacks/data/compose.yaml", &f.fill("services: {}\nnetworks:\n  infra:\n    name: t{id}-infra\n    ipam: {config: [{subnet: \"{net}.0/24\"}]}\n"));
    let out = f.ok("a", &["apply"]);
    assert!(
        out.contains(&format!("- container {} (data/db)", f.name("db"))),
        "{out}"
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{}$", f.name("db"))]),
        ""
    );
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{}$", f.name("data"))
        ]),
        f.name("data")
    );
}

#[test]
fn two_hosts_on_one_repo_manage_only_their_own_slice() {
    let f = Fixture::new();
    let one = |svc: &str| {
        f.fill(&format!("name: t{{id}}-{svc}\nservices:\n  {svc}:\n    image: {{image}}\n    container_name: t{{id}}-{svc}\n    command: sleep 3600\n    restart: unless-stopped\n"))
    };
    f.write("stacks/left/compose.yaml", &one("left"));
    f.write("stacks/right/compose.yaml", &one("right"));
    let (l, r) = (f.host("l"), f.host("r"));
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  {l}: {{stacks: [left]}}\n  {r}: {{stacks: [right]}}\n"),
    );
    f.ok("l", &["apply"]);
    f.ok("r", &["apply"]);
    assert_eq!(container_state(&f.name("left")), "running");
    assert_eq!(container_state(&f.name("right")), "running");
    let right_id = container_id(&f.name("right"));

    // Host l drops its stack: its container goes, host r's is untouched.
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  {l}: {{stacks: [left2]}}\n  {r}: {{stacks: [right]}}\n"),
    );
    f.write("stacks/left2/compose.yaml", &one("left2"));
    f.ok("l", &["apply"]);
    assert_eq!(container_state(&f.name("left")), "");
    assert_eq!(container_id(&f.name("right")), right_id);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.macula.gitops.host\"}}",
            &f.name("left2")
        ]),
        l
    );
}

#[test]
fn empty_desired_state_does_not_prune_without_allow_empty() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &f.fill("name: t{id}-s\nservices:\n  a:\n    image: {image}\n    container_name: t{id}-a\n    command: sleep 3600\n"));
    f.ok("h", &["apply"]);
    f.write(
        "stacks/s/compose.yaml",
        &f.fill("name: t{id}-s\nservices: {}\n"),
    );
    let o = f.run("h", &["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to remove all 1 managed containers")
    );
    assert_eq!(container_state(&f.name("a")), "running");
    f.ok("h", &["apply", "--allow-empty"]);
    assert_eq!(container_state(&f.name("a")), "");
}

#[test]
fn a_failing_service_does_not_stop_independent_ones() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill("name: t{id}-s\nservices:\n  good:\n    image: {image}\n    container_name: t{id}-good\n    command: sleep 3600\n  bad:\n    image: 127.0.0.1:1/t{id}-no-such-image:1\n    container_name: t{id}-bad\n  dependent:\n    image: {image}\n    container_name: t{id}-dep\n    command: sleep 3600\n    depends_on: [bad]\n"),
    );
    let o = f.run("h", &["apply"]);
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    // Tried: the network, the pull, and the three services.
    assert!(out.contains("3 failed, 5 tried"), "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "pulling image 127.0.0.1:1/t{}-no-such-image:1 from 127.0.0.1:1 failed",
            f.id
        )),
        "{err}"
    );
    assert!(
        err.contains("not started, dependency s/bad failed"),
        "{err}"
    );
    assert_eq!(container_state(&f.name("good")), "running");
}

#[test]
fn run_restores_killed_and_removed_containers() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write(
        "stacks/s/compose.yaml",
        &f.fill("name: t{id}-s\nservices:\n  one:\n    image: {image}\n    container_name: t{id}-one\n    command: sleep 3600\n    restart: unless-stopped\n  two:\n    image: {image}\n    container_name: t{id}-two\n    command: sleep 3600\n    restart: unless-stopped\n"),
    );
    let _daemon = f.spawn("d", &["run", "--interval", "1h"]);
    let limit = Duration::from_secs(60);
    wait_until(limit, "first apply", || {
        container_state(&f.name("one")) == "running" && container_state(&f.name("two")) == "running"
    });
    // Let the daemon's events stream settle on the running containers.
    std::thread::sleep(Duration::from_millis(500));
    let one = container_id(&f.name("one"));
    docker(&["kill", &f.name("one")]);
    docker(&["rm", "-f", &f.name("two")]);
    wait_until(limit, "drift repaired", || {
        container_state(&f.name("one")) == "running" && container_state(&f.name("two")) == "running"
    });
    // The killed container is started again, not replaced.
    assert_eq!(container_id(&f.name("one")), one);
}

#[test]
fn clear_errors_for_an_unreachable_engine_and_a_taken_port() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    // A port some other process holds on this host.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    f.write(
        "stacks/s/compose.yaml",
        &f.fill(&format!("name: t{{id}}-s\nservices:\n  web:\n    image: {{image}}\n    container_name: t{{id}}-web\n    command: httpd -f -p 80\n    ports: [\"127.0.0.1:{port}:80\"]\n")),
    );

    let o = f
        .command("h", &["apply"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "cannot reach the Docker engine at unix:///nonexistent/docker.sock: is Docker running?"
        ),
        "{err}"
    );

    let o = f.run("h", &["apply"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "container t{}-web: host port 127.0.0.1:{port} is already allocated",
            f.id
        )),
        "{err}"
    );
    // The container that could not start is not left behind to look converged.
    assert_eq!(container_state(&f.name("web")), "");
    drop(holder);
}

#[test]
fn a_service_starts_when_its_own_dependencies_are_ready() {
    let f = Fixture::new();
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    // `slow` turns healthy only when the test says so; `c` needs only `a`, which needs only
    // `fast`. Nothing on c's side waits for `slow` (or for `b`, which does).
    f.write(
        "stacks/s/compose.yaml",
        &f.fill(
            r#"name: t{id}-s
services:
  slow:
    image: {image}
    container_name: t{id}-slow
    command: sleep 3600
    healthcheck: {test: [CMD, test, -f, /ok], interval: 1s, retries: 1000}
  fast:
    image: {image}
    container_name: t{id}-fast
    command: sleep 3600
    healthcheck: {test: [CMD, "true"], interval: 1s}
  b:
    image: {image}
    container_name: t{id}-b
    command: sleep 3600
    depends_on: {slow: {condition: service_healthy}}
  a:
    image: {image}
    container_name: t{id}-a
    command: sleep 3600
    depends_on: {fast: {condition: service_healthy}}
  c:
    image: {image}
    container_name: t{id}-c
    command: sleep 3600
    depends_on: [a]
"#,
        ),
    );
    let mut apply = f.spawn("h", &["apply"]);
    wait_until(
        Duration::from_secs(60),
        "c running while slow is not healthy",
        || container_state(&f.name("c")) == "running",
    );
    assert_eq!(container_state(&f.name("a")), "running");
    assert_ne!(container_state(&f.name("b")), "running", "b waits for slow");
    docker(&["exec", &f.name("slow"), "touch", "/ok"]);
    let status = apply.0.wait().expect("apply exits");
    assert!(status.success(), "{status}");
    assert_eq!(container_state(&f.name("b")), "running");
}

/// Writes many files into its own layer first: `docker rm -f` then reports the die at once and
/// spends a while deleting them, holding the name.
const SLOW_TO_REMOVE: &str = r#"
name: t{id}-s
services:
  app:
    image: {image}
    container_name: t{id}-app
    command: sh -c "mkdir /d && i=0 && while [ $$i -lt 5000 ]; do echo x > /d/$$i; i=$$((i+1)); done && echo ok > /ready && exec sleep 3600"
"#;

/// `docker rm -f name` in the background, returned once the engine has reported its die and
/// shows the container removing (files being deleted, the name still held) or gone.
fn force_removal_under_way(name: &str) -> std::process::Child {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let id = container_id(name);
    // From before the removal: a die reported before the stream opens is replayed.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2;
    let mut events = crate::support::KillOnDrop(
        Command::new("docker")
            .args([
                "events",
                "--since",
                &since.to_string(),
                "--format",
                "{{.Action}}",
            ])
            .args([
                "--filter",
                &format!("container={id}"),
                "--filter",
                "event=die",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rm = Command::new("docker")
        .args(["rm", "-f", &id])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(events.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "die");
    // The die is sent while the engine still records the exit (the list says "running").
    wait_until(Duration::from_secs(60), "the removal under way", || {
        matches!(container_state(&id).as_str(), "removing" | "")
    });
    rm
}

/// A pass that meets someone's `docker rm -f` still being carried out ends applied with the
/// service running: a create refused for the name waits for the removal (the plan made from an
/// observation that no longer lists the container), and so does a pass that sees it removing.
#[tokio::test]
async fn a_pass_meeting_a_forced_removal_waits_for_it_and_ends_applied() {
    use macula_gitops::apply::{apply, ApplyContext};
    use macula_gitops::desired::{interpolate::Env, load_desired};
    use macula_gitops::engine::{DockerEngine, Engine};
    use macula_gitops::plan::{plan, PlanOptions};

    let f = Fixture::new();
    let host = f.host("a");
    let app = f.name("app");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &f.fill(SLOW_TO_REMOVE));
    f.ok("a", &["apply"]);
    let limit = Duration::from_secs(60);
    let ready = || docker(&["exec", &app, "cat", "/ready"]) == "ok";
    wait_until(limit, "files written", ready);

    // The create path, through the agent's apply.
    let engine = DockerEngine::connect().await.unwrap();
    let desired = load_desired(&f.root(), &host, &Env::default()).unwrap();
    let mut observed = engine.observe().await.unwrap();
    observed.containers.retain(|c| c.name != app);
    let steps = plan(&desired, &observed, &PlanOptions::default());
    assert_eq!(
        steps.to_string().trim(),
        format!("+ container {app} (s/app)")
    );
    let ctx = ApplyContext {
        revision: None,
        pins: None,
        state_dir: f.state.path().into(),
        data_root: f.data.path().into(),
        prune_volumes: false,
        health_timeout: limit,
    };
    let mut rm = force_removal_under_way(&app);
    let report = apply(&engine, &desired, &observed, &steps, &ctx).await;
    assert!(rm.wait().unwrap().success());
    assert_eq!((report.failed, report.tried), (0, 1), "{:?}", report.errors);
    assert_eq!(container_state(&app), "running");

    // A whole pass of the binary, its observation made while the removal runs.
    wait_until(limit, "files written", ready);
    let mut rm = force_removal_under_way(&app);
    let out = f.ok("a", &["apply"]);
    assert!(rm.wait().unwrap().success());
    assert!(out.contains("0 failed"), "{out}");
    assert_eq!(container_state(&app), "running", "{out}");
}
