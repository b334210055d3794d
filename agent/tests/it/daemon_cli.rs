//! The `macula-gitops` binary's daemon commands: run, status (text and JSON), suspend,
//! install-service, and clean exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::git::Repos;
use crate::support::{free_port, KillOnDrop, BIN};

fn bin() -> Command {
    Command::new(BIN)
}

fn run_ok(args: &[&str]) -> String {
    let out = bin().args(args).output().expect("binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_service_writes_the_unit() {
    let dir = tempfile::tempdir().expect("tmp");
    let unit = dir.path().join("macula-gitops.service");
    let out = run_ok(&[
        "install-service",
        "--config",
        "/etc/macula-gitops/agent.yaml",
        "--unit-path",
        unit.to_str().expect("utf8"),
        "--exe",
        "/usr/local/bin/macula-gitops",
    ]);
    assert!(out.contains("wrote"));
    let text = std::fs::read_to_string(unit).expect("unit written");
    assert!(text.contains(
        "ExecStart=/usr/local/bin/macula-gitops run --config /etc/macula-gitops/agent.yaml"
    ));
    assert!(text.contains("[Install]"));
}

#[test]
fn run_status_suspend_and_sigterm() {
    let r = Repos::new();
    r.write("desired-state/app.env", "MESSAGE=cli\n");
    let c1 = r.commit_push("cli");
    let state = tempfile::tempdir().expect("tmp");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = state.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: {listen}\nstate_dir: {}\nsource:\n  url: {}\n  ref: main\n  interval: 0s\n",
            state.path().join("state").display(),
            r.file_url()
        ),
    )
    .expect("config");
    let cfg = cfg.to_str().expect("utf8").to_string();
    let mut child = bin()
        .args(["run", "--config", &cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let mut fetched = None;
    for _ in 0..300 {
        let out = bin()
            .args(["status", "--config", &cfg, "--output", "json"])
            .output()
            .expect("status runs");
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            // The pass that follows the fetch sets last_result; wait for both.
            if v["fetched_revision"].as_str() == Some(c1.as_str()) && v["last_result"].is_string() {
                fetched = Some(v);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = fetched.expect("daemon fetched the commit");
    assert_eq!(v["source_url"].as_str(), Some(r.file_url().as_str()));
    assert!(v["last_result"].is_string());

    assert_eq!(run_ok(&["suspend", "--config", &cfg]).trim(), "suspended");
    let text = run_ok(&["status", "--config", &cfg]);
    assert!(
        text.contains(&format!("fetched:   {}", &c1[..12])),
        "{text}"
    );
    assert!(text.contains("suspended: yes"), "{text}");
    assert!(state.path().join("state/suspended").exists());

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _guard = KillOnDrop(child);
    let status = status.expect("daemon exits after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
}
