//! `git push` is the deployment: the binary's GitOps daemon with the real Docker core, a repo
//! served over smart HTTP, a post-receive hook posting a signed GitHub webhook, and real
//! containers.

use std::process::Stdio;
use std::time::Duration;

use crate::support::daemon::{install_github_hook, status_json as status};
use crate::support::docker::{container_id, env_var};
use crate::support::fixture::Fixture;
use crate::support::git::{HttpGit, Repos};
use crate::support::{free_port, wait_until, KillOnDrop, BIN};

const COMPOSE: &str = "name: t{id}-s\nservices:\n  app:\n    image: {image}\n    container_name: t{id}-app\n    command: sleep 3600\n    environment: {MODE: MODE_VALUE}\n";

#[test]
fn push_deploys_and_a_broken_commit_keeps_the_last_good_revision() {
    let f = Fixture::new();
    let host = f.host("gitops");
    let app = f.name("app");
    let r = Repos::new();
    let compose = |m: &str| f.fill(COMPOSE).replace("MODE_VALUE", m);
    r.write(
        "desired-state/hosts.yaml",
        "hosts:\n  default: {stacks: [s]}\n",
    );
    r.write("desired-state/stacks/s/compose.yaml", &compose("one"));
    let c1 = r.commit_push("one");

    let http = HttpGit::start(r.bare.parent().expect("parent"), None);
    let secret = f.state.path().join("hook-secret");
    std::fs::write(&secret, "e2e-secret\n").expect("write");
    let listen = format!("127.0.0.1:{}", free_port());
    let state_dir = f.state.path().join("agent");
    let _d = KillOnDrop(
        std::process::Command::new(BIN)
            .args(["--host", &host, "--state-dir"])
            .arg(&state_dir)
            .args(["run", "--url", &http.url("lab.git"), "--ref", "main"])
            .args([
                "--interval",
                "0s",
                "--listen",
                &listen,
                "--webhook-secret-file",
            ])
            .arg(&secret)
            .env("MACULA_GITOPS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    let limit = Duration::from_secs(90);
    wait_until(limit, "first clone and apply", || {
        status(&listen)["applied_revision"].as_str() == Some(c1.as_str())
            && env_var(&app, "MODE") == "one"
    });
    let first = container_id(&app);
    let s = status(&listen);
    assert_eq!(
        s["services"],
        serde_json::json!([{"name": "s/app", "state": "running", "replica": 1, "wanted": 1, "revision": c1}]),
        "per-service state and revision in status"
    );

    // A push with a changed service: the hook's signed webhook wakes the daemon (no polling).
    let code = f.state.path().join("code");
    install_github_hook(&r.bare, listen.parse().expect("addr"), &secret, &code);
    r.write("desired-state/stacks/s/compose.yaml", &compose("two"));
    let c2 = r.commit_push("two");
    assert_eq!(std::fs::read_to_string(&code).expect("hook ran"), "202");
    wait_until(limit, "pushed change applied", || {
        status(&listen)["applied_revision"].as_str() == Some(c2.as_str())
            && env_var(&app, "MODE") == "two"
    });
    assert_ne!(container_id(&app), first, "changed service recreated");

    // A broken commit: not applied, the error (file and line) in status, the service runs on.
    let running = container_id(&app);
    r.write(
        "desired-state/stacks/s/compose.yaml",
        &format!("{}    no_such_key: 1\n", compose("three")),
    );
    let bad = r.commit_push("broken");
    wait_until(limit, "broken commit reported", || {
        let s = status(&listen);
        s["fetched_revision"].as_str() == Some(bad.as_str())
            && s["last_result"].as_str() == Some("invalid")
    });
    let s = status(&listen);
    assert_eq!(s["applied_revision"].as_str(), Some(c2.as_str()));
    let diags = s["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diags.iter().any(|d| d["line"].as_u64() == Some(8)
            && d["file"]
                .as_str()
                .is_some_and(|p| p.ends_with("compose.yaml"))),
        "{diags:?}"
    );
    assert_eq!(container_id(&app), running);
    assert_eq!(env_var(&app, "MODE"), "two");
}
