//! Rollouts on the real engine: stacks started in their `hosts.yaml` order; the binary's
//! daemon over smart HTTP rolling a broken-health commit back and a fix forward.

use std::process::Stdio;
use std::time::Duration;

use crate::support::daemon::status_json;
use crate::support::docker::{container_state, docker, env_var};
use crate::support::fixture::Fixture;
use crate::support::git::{HttpGit, Repos};
use crate::support::receiver::{Received, Receiver};
use crate::support::{bin, free_port, wait_until, KillOnDrop};
use macula_gitops::server::client;

/// The registry answers only after a delay; its healthcheck says when.
const REGISTRY: &str = r#"
services:
  registry:
    image: {image}
    container_name: t{id}-registry
    command: sh -c "sleep 2; mkdir -p /w && echo ok > /w/index.html && httpd -f -p 8080 -h /w"
    healthcheck: {test: [CMD, wget, -q, -O-, "http://127.0.0.1:8080/"], interval: 1s, retries: 30}
    networks: [shared]
networks:
  shared: {name: t{id}-shared}
"#;

/// Exits at once unless the registry answers: running proves it was started after it.
const APPS: &str = r#"
services:
  app:
    image: {image}
    container_name: t{id}-app
    command: sh -c "wget -q -O /dev/null http://t{id}-registry:8080/ && exec sleep 3600"
    networks: [shared]
networks:
  shared: {name: t{id}-shared, external: true}
"#;

#[test]
fn a_stack_after_another_starts_once_that_one_is_healthy() {
    let f = Fixture::new();
    // Listed apps first: only `after` puts the registry first.
    f.write(
        "hosts.yaml",
        "stacks:\n  apps: {after: [registry]}\nhosts:\n  default: {stacks: [apps, registry]}\n",
    );
    f.write("stacks/registry/compose.yaml", &f.fill(REGISTRY));
    f.write("stacks/apps/compose.yaml", &f.fill(APPS));
    let out = f.ok("a", &["apply"]);
    assert!(out.contains("0 failed"), "{out}");
    assert_eq!(container_state(&f.name("app")), "running", "{out}");

    // A cycle is refused with the file and line, and nothing is changed.
    f.write(
        "hosts.yaml",
        "stacks:\n  apps: {after: [registry]}\n  registry: {after: [apps]}\nhosts:\n  default: {stacks: [apps, registry]}\n",
    );
    let o = f.run("a", &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(
            "hosts.yaml:2: stacks.apps.after: after forms a cycle: apps -> registry -> apps"
        ),
        "{err}"
    );
}

/// `app` is healthy when its command created /ok (HEALTH_CMD); `web` waits for it; `other`
/// is independent. Every service logs its MODE into the named volume: a rollback keeps it.
const STACK: &str = r#"
name: t{id}-s
services:
  app:
    image: {image}
    container_name: t{id}-app
    command: sh -c "echo $$MODE >> /data/log; HEALTH_CMD exec sleep 3600"
    environment: {MODE: MODE_VALUE}
    volumes: [data:/data]
    healthcheck: {test: "test -f /ok", interval: 1s, retries: 2}
  web:
    image: {image}
    container_name: t{id}-web
    command: sleep 3600
    environment: {MODE: MODE_VALUE}
    depends_on: {app: {condition: service_healthy}}
  other:
    image: {image}
    container_name: t{id}-other
    command: sleep 3600
    environment: {MODE: MODE_VALUE}
volumes:
  data: {name: t{id}-data}
"#;

/// The issue's "done when": a broken-health commit pushed over smart HTTP is rolled back, its
/// commit status is `failure`, ONE notification tells it (not one per pass), and the previous
/// containers run; a fix rolls forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_healthcheck_never_passes_is_rolled_back_and_a_fix_rolls_forward() {
    // Receivers for the notification (json sink) and the forge's status API (Forgejo).
    let recv = Receiver::start().await;
    let f = Fixture::new();
    let host = f.host("gitops");
    let (app, web, other) = (f.name("app"), f.name("web"), f.name("other"));
    let r = Repos::new();
    let stack = |mode: &str, healthy: bool| {
        f.fill(STACK)
            .replace("MODE_VALUE", mode)
            .replace("HEALTH_CMD", if healthy { "touch /ok;" } else { "" })
    };
    r.write(
        "desired-state/hosts.yaml",
        "hosts:\n  default: {stacks: [s]}\n",
    );
    r.write("desired-state/stacks/s/compose.yaml", &stack("one", true));
    let c1 = r.commit_push("one");

    let http = HttpGit::start(r.bare.parent().expect("parent"), None);
    let listen = format!("127.0.0.1:{}", free_port());
    let state_dir = f.state.path().join("agent");
    let config = f.state.path().join("agent.yaml");
    let token = f.state.path().join("forge-token");
    std::fs::write(&token, "f0rg3tok\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "rollout: {{timeout: 60s, stable: 2s}}\nnotifications:\n  sinks:\n    - {{type: json, url: \"{u}/hook\", template: \"{{event}} {{short}}\"}}\ncommit_status: {{provider: forgejo, api_url: \"{u}/api/v1\", repository: acme/lab, token_file: {t}}}\n",
            u = recv.url,
            t = token.display()
        ),
    )
    .unwrap();
    let _d = polling_daemon(&host, &state_dir, &http.url("lab.git"), &listen, &config);
    let limit = Duration::from_secs(120);
    let rollout = |phase: &str, rev: &str| {
        let s = status_json(&listen);
        s["rollout"]["phase"].as_str() == Some(phase)
            && s["rollout"]["revision"].as_str() == Some(rev)
    };
    wait_until(limit, "first revision rolled out healthy", || {
        rollout("healthy", &c1)
    });
    let s = status_json(&listen);
    assert_eq!(s["last_good_revision"].as_str(), Some(c1.as_str()), "{s:#}");

    // The healthcheck of the new app never passes: app and web (which depends on it) go back
    // to revision one; other keeps revision two.
    r.write("desired-state/stacks/s/compose.yaml", &stack("two", false));
    let c2 = r.commit_push("two: broken health");
    wait_until(limit, "broken revision rolled back", || {
        rollout("rolled-back", &c2)
    });
    let s = status_json(&listen);
    // The pass said so (later pinned passes are plain successes), and so do the metrics.
    let metrics = macula_gitops::server::client::http_client()
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"macula_gitops_reconcile_total{result="rolled-back"} 1"#.to_string(),
        format!(r#"macula_gitops_rollout_state{{revision="{c2}",state="rolled-back"}} 1"#),
    ] {
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
    assert_eq!(
        s["rollout"]["pinned_to"].as_str(),
        Some(c1.as_str()),
        "{s:#}"
    );
    assert_eq!(
        s["rollout"]["pinned"],
        serde_json::json!(["s/app", "s/web"]),
        "{s:#}"
    );
    let why = s["rollout"]["failed"]["s/app"].as_str().unwrap_or_default();
    assert!(why.contains("unhealthy"), "{s:#}");
    assert_eq!(env_var(&app, "MODE"), "one");
    assert_eq!(env_var(&web, "MODE"), "one");
    assert_eq!(env_var(&other, "MODE"), "two");
    // Each container says which commit it runs: the pinned ones the last good one.
    let revision = |name: &str| docker(&["inspect", "-f", REVISION_LABEL, name]);
    assert_eq!(
        [revision(&app), revision(&web), revision(&other)],
        [c1.clone(), c1.clone(), c2.clone()]
    );
    // And so does status.
    let shown: Vec<serde_json::Value> = status_json(&listen)["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!([s["name"], s["revision"]]))
        .collect();
    assert_eq!(
        shown,
        [
            serde_json::json!(["s/app", c1]),
            serde_json::json!(["s/other", c2]),
            serde_json::json!(["s/web", c1])
        ]
    );
    wait_until(limit, "app of revision one healthy again", || {
        docker(&["inspect", "-f", "{{.State.Health.Status}}", &app]) == "healthy"
    });
    // The named volume went through the rollback untouched.
    assert_eq!(docker(&["exec", &app, "cat", "/data/log"]), "one\ntwo\none");

    // Passes later (polls every second): the rollback was told once, and the commit's status
    // went pending → failure once.
    for _ in 0..2 {
        let before = status_json(&listen)["last_run_at"].clone();
        wait_until(limit, "another pass", || {
            status_json(&listen)["last_run_at"] != before
        });
    }
    let seen = recv.requests();
    let told: Vec<String> = hooks(&seen);
    let short2 = &c2[..7];
    assert_eq!(
        told.iter()
            .filter(|t| t.starts_with("rolled-back"))
            .cloned()
            .collect::<Vec<_>>(),
        [format!("rolled-back {short2}")],
        "{told:?}"
    );
    assert!(
        !told.iter().any(|t| *t == format!("applied {short2}")),
        "{told:?}"
    );
    let states2: Vec<(String, String)> = statuses(&seen)
        .into_iter()
        .filter(|(sha, _, _)| *sha == c2)
        .map(|(_, state, text)| (state, text))
        .collect();
    assert_eq!(states2.len(), 2, "{states2:?}");
    assert_eq!(states2[0].0, "pending");
    assert_eq!(states2[1].0, "failure");
    assert!(
        states2[1].1.starts_with("rolled back on")
            && states2[1].1.contains("s/app: rollout failed"),
        "{states2:?}"
    );

    // Drift repair keeps the rolled-back spec: a removed app comes back as revision one.
    docker(&["rm", "-f", &app]);
    wait_until(limit, "drift repaired", || {
        container_state(&app) == "running"
    });
    assert_eq!(env_var(&app, "MODE"), "one");
    assert_eq!(revision(&app), c1);
    let s = status_json(&listen);
    assert_eq!(s["rollout"]["phase"].as_str(), Some("rolled-back"), "{s:#}");

    // An operator's plain `reconcile` keeps the pins; `--force` rolls the revision out again
    // (and, still broken, it is rolled back again).
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let token = macula_gitops::server::auth::read_token(&state_dir).unwrap();
    let before = status_json(&listen)["last_run_at"].clone();
    client::reconcile(addr, &token, false).await.unwrap();
    wait_until(limit, "the asked-for pass", || {
        status_json(&listen)["last_run_at"] != before
    });
    assert_eq!(env_var(&app, "MODE"), "one");
    assert_eq!(
        status_json(&listen)["rollout"]["phase"].as_str(),
        Some("rolled-back")
    );
    let at = status_json(&listen)["rollout"]["at"].clone();
    client::reconcile(addr, &token, true).await.unwrap();
    wait_until(limit, "the forced rollout rolled back again", || {
        let s = status_json(&listen);
        s["rollout"]["at"] != at && rollout("rolled-back", &c2)
    });
    assert_eq!(env_var(&app, "MODE"), "one");

    // A fix rolls forward: every service runs revision three.
    r.write("desired-state/stacks/s/compose.yaml", &stack("three", true));
    let c3 = r.commit_push("three: fixed");
    wait_until(limit, "fix rolled out", || rollout("healthy", &c3));
    for name in [&app, &web, &other] {
        assert_eq!(env_var(name, "MODE"), "three", "{name}");
    }
    let s = status_json(&listen);
    assert_eq!(s["last_good_revision"].as_str(), Some(c3.as_str()), "{s:#}");
    assert_eq!(s["last_result"].as_str(), Some("success"), "{s:#}");
    let applied3 = format!("applied {}", &c3[..7]);
    let mut seen = recv.requests();
    for _ in 0..100 {
        if hooks(&seen).contains(&applied3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = recv.requests();
    }
    assert!(hooks(&seen).contains(&applied3), "{:?}", hooks(&seen));
    let last3 = statuses(&seen).into_iter().rfind(|(sha, _, _)| *sha == c3);
    assert_eq!(last3.map(|(_, state, _)| state).as_deref(), Some("success"));
}

/// `docker inspect -f` for the commit a container was created from.
const REVISION_LABEL: &str = r#"{{index .Config.Labels "io.macula.gitops.revision"}}"#;

/// The watch of a rollout runs beside the loop: while a revision's services are still being
/// watched (a 10-minute stability window here), a container removed by hand is repaired and a
/// newer commit is applied at once — neither waits for the watch.
#[test]
fn a_rollout_watch_holds_up_neither_drift_repair_nor_a_newer_commit() {
    let f = Fixture::new();
    let solo = f.name("solo");
    let r = Repos::new();
    let stack = |mode: &str| {
        f.fill("services:\n  solo:\n    image: {image}\n    container_name: t{id}-solo\n    command: sleep 3600\n    environment: {MODE: MODE_VALUE}\n")
            .replace("MODE_VALUE", mode)
    };
    r.write(
        "desired-state/hosts.yaml",
        "hosts:\n  default: {stacks: [s]}\n",
    );
    r.write("desired-state/stacks/s/compose.yaml", &stack("one"));
    let c1 = r.commit_push("one");
    let http = HttpGit::start(r.bare.parent().expect("parent"), None);
    let listen = format!("127.0.0.1:{}", free_port());
    let config = f.state.path().join("agent.yaml");
    std::fs::write(&config, "rollout: {timeout: 20m, stable: 10m}\n").unwrap();
    let state_dir = f.state.path().join("agent");
    let _d = polling_daemon(
        &f.host("gitops"),
        &state_dir,
        &http.url("lab.git"),
        &listen,
        &config,
    );
    let limit = Duration::from_secs(120);
    let watching = |rev: &str| {
        let s = status_json(&listen);
        s["rollout"]["phase"].as_str() == Some("watching")
            && s["rollout"]["revision"].as_str() == Some(rev)
    };
    wait_until(limit, "revision one watched", || {
        watching(&c1) && container_state(&solo) == "running"
    });

    docker(&["rm", "-f", &solo]);
    wait_until(limit, "drift repaired during the watch", || {
        container_state(&solo) == "running"
    });
    assert!(watching(&c1), "{:#}", status_json(&listen));

    r.write("desired-state/stacks/s/compose.yaml", &stack("two"));
    let c2 = r.commit_push("two");
    wait_until(limit, "revision two applied while one was watched", || {
        container_state(&solo) == "running" && env_var(&solo, "MODE") == "two"
    });
    // Revision one's watch ended unjudged (superseded); two is watched now.
    wait_until(limit, "revision two watched", || watching(&c2));
    let s = status_json(&listen);
    assert_eq!(s["applied_revision"].as_str(), Some(c2.as_str()), "{s:#}");
    assert_eq!(s["last_good_revision"], serde_json::Value::Null, "{s:#}");
}

/// The binary's daemon following `main` of `url`, polling every second.
fn polling_daemon(
    host: &str,
    state_dir: &std::path::Path,
    url: &str,
    listen: &str,
    config: &std::path::Path,
) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(bin())
            .args(["--host", host, "--state-dir"])
            .arg(state_dir)
            .args(["run", "--url", url, "--ref", "main"])
            .args(["--interval", "1s", "--listen", listen, "--config"])
            .arg(config)
            .env("MACULA_GITOPS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    )
}

/// The json sink's messages (`{event} {short}`), in order.
fn hooks(seen: &[Received]) -> Vec<String> {
    seen.iter()
        .filter(|r| r.path == "/hook")
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// The commit statuses set, in order: (commit, state, description).
fn statuses(seen: &[Received]) -> Vec<(String, String, String)> {
    seen.iter()
        .filter(|r| r.path.starts_with("/api/v1/repos/acme/lab/statuses/"))
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let sha = r.path.rsplit('/').next().unwrap().to_string();
            let text = v["description"].as_str().unwrap_or_default().to_string();
            (
                sha,
                v["state"].as_str().unwrap_or_default().to_string(),
                text,
            )
        })
        .collect()
}
