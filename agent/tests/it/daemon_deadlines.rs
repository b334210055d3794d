//! Nothing hangs: a git server that trickles one byte every 2 s (a real TCP server speaking
//! just enough HTTP), and a Docker socket that accepts and never answers, against the agent
//! binary. Deadlines are measured from outside, as an operator would see them.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{free_port, KillOnDrop, BIN};

/// An HTTP server on 127.0.0.1 that answers every request with a 200 header, then one byte of
/// a ref advertisement every 2 s, forever. Also returns how many connections a client still
/// holds open (one ends when a write to it fails).
fn trickling_server() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let done = Closed(count.clone());
            std::thread::spawn(move || {
                let _done = done;
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\r\n";
                if c.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for b in b"001e# service=git-upload-pack\n0000".iter().cycle() {
                    if c.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
        }
    });
    (port, open)
}

/// Counts a trickled connection as closed however its thread ends.
struct Closed(Arc<AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn status_json(cfg: &std::path::Path) -> Option<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["status", "--output", "json", "--config"])
        .arg(cfg)
        .stderr(Stdio::null())
        .output()
        .expect("status runs");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

/// `run` on a config in `dir` that fetches `url` with `source.timeouts: <timeouts>` and no
/// poll interval; returns the config path (for `status`) and the daemon.
fn daemon(dir: &std::path::Path, url: &str, timeouts: &str) -> (std::path::PathBuf, KillOnDrop) {
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\nstate_dir: {}\nsource:\n  url: {url}\n  interval: 0s\n  timeouts: {timeouts}\n",
            free_port(),
            dir.join("state").display()
        ),
    )
    .expect("config");
    let child = KillOnDrop(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    (cfg, child)
}

#[test]
fn trickling_git_server_fails_the_fetch_at_the_deadline_and_sigterm_still_exits() {
    let (port, open) = trickling_server();
    let dir = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let (cfg, mut child) = daemon(
        dir.path(),
        &format!("http://127.0.0.1:{port}/lab.git"),
        "{total: 3s}",
    );
    let mut failed = None;
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(v) = status_json(&cfg) {
            if v["last_result"].as_str() == Some("fetch-error") {
                failed = Some((started.elapsed(), v));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (took, v) = failed.expect("the trickled fetch fails");
    let err = v["last_error"].as_str().expect("last_error");
    assert!(err.contains("source.timeouts.total (3s)"), "{err}");
    // 3 s deadline + start-up; the trickle alone would take minutes.
    assert!(
        took < Duration::from_secs(8),
        "fetch failed only after {took:?}"
    );
    eprintln!("trickled fetch failed after {took:?}");
    // The abandoned fetch does not keep reading: its request ends at the same deadline, so the
    // trickled connection is let go (one thread per attempt would pile up otherwise).
    crate::support::wait_until(
        Duration::from_secs(20),
        "the abandoned fetch to close its connection",
        || open.load(Ordering::SeqCst) == 0,
    );
    eprintln!(
        "abandoned fetch let go of its connection after {:?}",
        started.elapsed()
    );

    // A new fetch is in flight (stalled on the trickle) when SIGTERM arrives.
    let out = Command::new(BIN)
        .args(["reconcile", "--config"])
        .arg(&cfg)
        .output()
        .expect("reconcile runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    let term = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let mut code = None;
    while term.elapsed() < Duration::from_secs(10) {
        if let Some(s) = child.0.try_wait().expect("wait") {
            code = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let code =
        code.unwrap_or_else(|| panic!("daemon still running {:?} after SIGTERM", term.elapsed()));
    assert!(code.success(), "{code:?}");
    assert!(
        term.elapsed() < Duration::from_secs(4),
        "{:?}",
        term.elapsed()
    );
    eprintln!("SIGTERM → exit in {:?}", term.elapsed());
}

#[test]
fn sigterm_during_a_stalled_ssh_fetch_leaves_no_ssh_running() {
    let port = crate::support::git::mute_ssh_server(true);
    let dir = tempfile::tempdir().expect("tmp");
    let (_, mut child) = daemon(
        dir.path(),
        &format!("ssh://git@127.0.0.1:{port}/lab.git"),
        "{idle: 10m, total: 10m}",
    );
    let needle = format!("-p{port}");
    crate::support::wait_until(Duration::from_secs(30), "the daemon's ssh", || {
        !crate::support::processes_naming(&needle).is_empty()
    });
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    crate::support::wait_until(Duration::from_secs(30), "the daemon to exit", || {
        child.0.try_wait().expect("wait").is_some()
    });
    // The fetch was abandoned at the exit, its deadline minutes away: its ssh ends with the agent.
    crate::support::wait_until(Duration::from_secs(10), "no ssh left", || {
        crate::support::processes_naming(&needle).is_empty()
    });
}

#[test]
fn docker_socket_that_never_answers_fails_apply_in_seconds() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c); // accepted, never read, never answered
        }
    });
    let desired = dir.path().join("desired-state");
    std::fs::create_dir_all(&desired).expect("mkdir");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "apply",
            "--allow-empty",
            "--host",
            "mute-test",
            "--desired-state",
        ])
        .arg(&desired)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .output()
        .expect("apply runs");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "apply succeeded against a mute socket"
    );
    assert!(
        took < Duration::from_secs(10),
        "apply failed only after {took:?}"
    );
    assert!(stderr.contains(sock.to_str().expect("utf8")), "{stderr}");
    assert!(stderr.contains("does not respond"), "{stderr}");
    eprintln!("apply against a mute socket failed after {took:?}: {stderr}");
}

/// A TCP proxy to `target` on 127.0.0.1; once `stall` is set, new connections are accepted
/// and never answered (a git server that hangs mid-operation).
fn stallable_proxy(target: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stall = std::sync::Arc::new(AtomicBool::new(false));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let flag = stall.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(client) = conn else { return };
            if flag.load(Ordering::SeqCst) {
                held.push(client);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (port, stall)
}

/// While a fetch hangs, a stopped container is still repaired from the applied snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fetch_does_not_block_drift_repair() {
    use crate::support::daemon::{config, wait_status, Scenario};
    use crate::support::git::HttpGit;
    use crate::support::reconciler::inspect;
    use macula_gitops::trigger::Cause;

    let sc = Scenario::new("stall");
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    let http = HttpGit::start(sc.r.bare.parent().expect("parent"), None);
    let (port, stall) = stallable_proxy(http.port);
    let url = http
        .url("lab.git")
        .replace(&http.port.to_string(), &port.to_string());
    let mut cfg = config(&url, sc.state.path(), None);
    if let Some(s) = cfg.source.as_mut() {
        s.timeouts.total = Some("60s".into());
    }
    let addr = cfg.listen();
    let metrics = std::sync::Arc::new(macula_gitops::server::metrics::Metrics::new());
    let daemon = macula_gitops::daemon::Daemon::new(cfg, rec, metrics).expect("daemon");
    let trigger = daemon.trigger();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = rx.await;
    }));
    wait_status(addr, "first apply", |s| {
        s.applied_revision.as_deref() == Some(sc.c1.as_str())
    })
    .await;

    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    trigger.fire(Cause::Manual); // this fetch hangs for up to 60 s
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = Command::new("docker")
        .args(["stop", "-t", "0", &name])
        .output()
        .expect("docker stop");
    assert!(out.status.success());
    let stopped = Instant::now();
    trigger.fire(Cause::Drift);
    loop {
        if matches!(inspect(&name), Some((_, _, true, _))) {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "drift not repaired while the fetch hangs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "repaired {:?} after the stop, fetch still hanging",
        stopped.elapsed()
    );
    let _ = tx.send(());
    let stop = Instant::now();
    task.await.expect("task").expect("daemon stops");
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "{:?}",
        stop.elapsed()
    );
}
