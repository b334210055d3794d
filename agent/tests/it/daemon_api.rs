//! The daemon's local API against forged browsers and unauthenticated local users: a real
//! daemon on a real listener, requests written byte by byte so Host and Origin are exactly what
//! an attacker's page would send.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::daemon::{config, start, Scenario};

/// POST `path` with exactly `headers`; the HTTP status code.
async fn raw_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("POST {path} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_token_and_the_agents_own_name() {
    let sc = Scenario::new("api");
    let (rec, _guard) = sc.reconciler();
    let cfg = config(&sc.r.file_url(), sc.state.path(), None);
    let d = start(cfg, rec).await;
    let marker = sc.state.path().join("suspended");
    let own = d.addr.to_string();
    let bearer = format!("Bearer {}", d.token);

    // A page on evil.example that rebinds its name to 127.0.0.1 — even holding the token.
    let forged = [("Host", "evil.example"), ("Origin", "http://evil.example")];
    assert_eq!(raw_post(d.addr, "/suspend", &forged).await, 403);
    let forged_tok = [
        ("Host", "evil.example"),
        ("Origin", "http://evil.example"),
        ("Authorization", bearer.as_str()),
    ];
    assert_eq!(raw_post(d.addr, "/suspend", &forged_tok).await, 403);
    // CSRF: right Host (the browser talks to 127.0.0.1), foreign Origin.
    let csrf = [("Host", own.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(raw_post(d.addr, "/suspend", &csrf).await, 403);
    assert!(!marker.exists(), "a forged request suspended the agent");

    // Another local user without the token.
    let anon = [("Host", own.as_str())];
    assert_eq!(raw_post(d.addr, "/suspend", &anon).await, 401);
    let wrong = [("Host", own.as_str()), ("Authorization", "Bearer 0000")];
    assert_eq!(raw_post(d.addr, "/suspend", &wrong).await, 401);
    assert_eq!(raw_post(d.addr, "/reconcile", &wrong).await, 401);
    assert!(!marker.exists());

    // The owner.
    let owner = [("Host", own.as_str()), ("Authorization", bearer.as_str())];
    assert_eq!(raw_post(d.addr, "/suspend", &owner).await, 200);
    assert!(marker.exists());
    assert_eq!(raw_post(d.addr, "/resume", &owner).await, 200);
    assert!(!marker.exists());

    // Read-only status: open on loopback, but not to a rebound name.
    let http = macula_gitops::server::client::http_client();
    let ok = http
        .get(format!("http://{own}/status"))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status().as_u16(), 200);
    let mut s = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    d.stop().await;
}

/// A credentialed source URL refused by a real `git http-backend` (basic auth, other password):
/// the password is nowhere in `/status` (source_url, last_error) or the agent's log.
#[test]
fn credentials_in_the_url_never_show() {
    use crate::support::git::HttpGit;
    use crate::support::{free_port, KillOnDrop, BIN};
    use std::process::{Command, Stdio};

    let secret = "hunter2-pw";
    let sc = Scenario::new("cred");
    let http = HttpGit::start(sc.r.bare.parent().expect("parent"), Some(("bot", "right")));
    let url = http
        .url("lab.git")
        .replace("http://", &format!("http://bot:{secret}@"));
    let listen = format!("127.0.0.1:{}", free_port());
    let state = sc.state.path().join("state");
    let cfg = sc.state.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: {listen}\nstate_dir: {}\nsource:\n  url: {url}\n  ref: main\n  interval: 0s\n",
            state.display()
        ),
    )
    .expect("config");
    let log = sc.state.path().join("agent.log");
    let _d = KillOnDrop(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("MACULA_GITOPS_LOG", "debug")
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(sc.state.path().join("agent.err")).expect("log"))
            .spawn()
            .expect("daemon starts"),
    );
    let mut status = None;
    for _ in 0..300 {
        let out = Command::new(BIN)
            .args(["status", "--output", "json", "--listen", &listen])
            .stderr(Stdio::null())
            .output()
            .expect("status runs");
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            if v["last_result"].as_str() == Some("fetch-error") {
                status = Some((v, String::from_utf8_lossy(&out.stdout).into_owned()));
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (v, text) = status.expect("the refused fetch is reported");
    assert_eq!(
        v["source_url"].as_str(),
        Some(
            http.url("lab.git")
                .replace("http://", "http://***@")
                .as_str()
        )
    );
    let err = v["last_error"].as_str().expect("last_error");
    assert!(
        err.contains("127.0.0.1"),
        "the error names the server: {err}"
    );
    assert!(!text.contains(secret), "{text}");
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://{listen}/metrics")])
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&metrics.stdout).contains(secret));
    let logged = std::fs::read_to_string(&log).expect("log")
        + &std::fs::read_to_string(sc.state.path().join("agent.err")).expect("log");
    assert!(logged.contains("fetch failed"), "{logged}");
    assert!(!logged.contains(secret), "{logged}");
}

/// `/status` shows the engine's state when it is read: a container stopped behind the agent's
/// back (no pass since) is reported as exited at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_services_are_read_from_the_engine() {
    use crate::support::daemon::start_applied;
    let sc = Scenario::new("live");
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    let cfg = config(&sc.r.file_url(), sc.state.path(), None);
    let d = start_applied(cfg, rec, &sc.c1).await;
    let st = macula_gitops::server::client::status(d.addr)
        .await
        .expect("status");
    assert_eq!(st.services.len(), 1, "{:?}", st.services);
    assert_eq!(st.services[0].state, "running");
    let out = std::process::Command::new("docker")
        .args(["stop", "-t", "0", &name])
        .output()
        .expect("docker stop");
    assert!(out.status.success());
    // No drift watcher runs in-process: only a live read can see this.
    let st = macula_gitops::server::client::status(d.addr)
        .await
        .expect("status");
    assert_eq!(st.services[0].state, "exited", "{:?}", st.services);
    d.stop().await;
}
