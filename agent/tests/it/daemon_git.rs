//! The daemon end to end: real bare repos, real `git push`, post-receive hooks posting signed
//! webhooks, a local repository watched for commits, and real containers as the applied state.

use crate::support::daemon::{
    config, install_github_hook, start, start_applied, wait_status, Running, Scenario,
};
use crate::support::docker::Cleanup;
use crate::support::free_port;
use crate::support::git::{git, HttpGit, Repos};
use crate::support::reconciler::inspect;
use macula_gitops::server::client;

fn secret_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let good = dir.join("hook-secret");
    let bad = dir.join("wrong-secret");
    std::fs::write(&good, "correct horse battery staple\n").expect("write");
    std::fs::write(&bad, "not the secret\n").expect("write");
    (good, bad)
}

/// A daemon whose source is a bare repo served over smart HTTP — not a local repo, so no ref
/// watcher, and polling is off: only webhooks wake it — past its first apply of `MESSAGE=msg`.
struct OverHttp {
    r: Repos,
    c1: String,
    state: tempfile::TempDir,
    good: std::path::PathBuf,
    bad: std::path::PathBuf,
    name: String,
    d: Running,
    _http: HttpGit,
    _guard: Cleanup,
}

async fn over_http(msg: &str) -> OverHttp {
    let sc = Scenario::new(msg);
    let (good, bad) = secret_files(sc.state.path());
    let (rec, guard) = sc.reconciler();
    let name = rec.container();
    let http = HttpGit::start(sc.r.bare.parent().expect("parent"), None);
    let cfg = config(
        &http.url("lab.git"),
        &sc.state.path().join("state"),
        Some(&good),
    );
    let d = start_applied(cfg, rec, &sc.c1).await;
    let Scenario { r, c1, state, .. } = sc;
    OverHttp {
        r,
        c1,
        state,
        good,
        bad,
        name,
        d,
        _http: http,
        _guard: guard,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_signed_webhook_recreates_the_service_and_bad_hooks_do_nothing() {
    // Bind every field: with `..` the server and the container guard would drop right here.
    let OverHttp {
        r,
        c1,
        state,
        good,
        bad,
        name,
        d,
        _http,
        _guard,
    } = over_http("v1").await;
    let (msg, rev, running, first_id) = inspect(&name).expect("container created");
    assert_eq!(
        (msg.as_str(), rev.as_str(), running),
        ("v1", c1.as_str(), true)
    );

    // Wrong signature: 401, no fetch, nothing applied.
    let code = state.path().join("code");
    install_github_hook(&r.bare, d.addr, &bad, &code);
    r.write("desired-state/app.env", "MESSAGE=v2\n");
    let c2 = r.commit_push("v2");
    assert_eq!(std::fs::read_to_string(&code).expect("hook ran"), "401");
    let s = client::status(d.addr).await.expect("status");
    assert_eq!(
        s.fetched_revision.as_deref(),
        Some(c1.as_str()),
        "a rejected hook triggers nothing"
    );
    assert_eq!(inspect(&name).expect("still there").0, "v1");

    // Oversized body: 413 before anything else.
    let big = vec![b'x'; 64 * 1024];
    let resp = client::http_client()
        .post(format!("http://{}/hooks/github", d.addr))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);

    // Correctly signed, but a push to another branch: acknowledged, nothing fetched.
    let body = br#"{"ref":"refs/heads/feature"}"#;
    let sig = macula_gitops::server::webhook::sign(body, b"correct horse battery staple");
    let resp = client::http_client()
        .post(format!("http://{}/hooks/github", d.addr))
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body.to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(resp.text().await.expect("body").starts_with("ignored"));
    let s = client::status(d.addr).await.expect("status");
    assert_eq!(s.fetched_revision.as_deref(), Some(c1.as_str()));

    // The correctly signed hook of the next push: reconcile without any polling (interval 0s).
    install_github_hook(&r.bare, d.addr, &good, &code);
    r.write("desired-state/app.env", "MESSAGE=v3\n");
    let c3 = r.commit_push("v3");
    assert_ne!(c2, c3);
    assert_eq!(std::fs::read_to_string(&code).expect("hook ran"), "202");
    wait_status(d.addr, "webhook apply", |s| {
        s.applied_revision.as_deref() == Some(&c3)
    })
    .await;
    let (msg, rev, running, new_id) = inspect(&name).expect("container");
    assert_eq!(
        (msg.as_str(), rev.as_str(), running),
        ("v3", c3.as_str(), true)
    );
    assert_ne!(new_id, first_id, "changed service is recreated");

    let metrics = client::http_client()
        .get(format!("http://{}/metrics", d.addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(r#"macula_gitops_webhooks_total{provider="github",result="rejected"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        r#"macula_gitops_applied_revision_info{{revision="{c3}"}} 1"#
    )));
    assert!(metrics.contains(r#"macula_gitops_reconcile_total{result="success"}"#));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_unsafe_commit_keeps_the_previous_revision_running() {
    let sc = Scenario::new("good");
    let (r, c1, state) = (&sc.r, &sc.c1, &sc.state);
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    let d = start_applied(config(&r.file_url(), state.path(), None), rec, c1).await;
    let (_, _, _, good_id) = inspect(&name).expect("container");

    r.write(
        "desired-state/app.env",
        "MESSAGE=bad\nthis is not an env line\n",
    );
    let broken = r.commit_push("broken");
    client::reconcile(d.addr, &d.token, false)
        .await
        .expect("reconcile request");
    let s = wait_status(d.addr, "invalid result", |s| {
        s.last_result.as_deref() == Some("invalid")
    })
    .await;
    assert_eq!(s.fetched_revision.as_deref(), Some(broken.as_str()));
    assert_eq!(s.applied_revision.as_deref(), Some(c1.as_str()));
    assert!(s.pending);
    assert_eq!(s.diagnostics.len(), 1);
    assert_eq!(s.diagnostics[0].line, Some(2));
    assert_eq!(
        s.diagnostics[0].file.to_str(),
        Some("desired-state/app.env")
    );
    let (msg, _, running, same_id) = inspect(&name).expect("container");
    assert_eq!(
        (msg.as_str(), running, same_id),
        ("good", true, good_id.clone())
    );

    // A symlink escaping the repo: refused before anything is written into use.
    r.write("desired-state/app.env", "MESSAGE=leaky\n");
    std::os::unix::fs::symlink("../../../etc/passwd", r.work.join("desired-state/passwd"))
        .expect("ln");
    let unsafe_c = r.commit_push("escape");
    client::reconcile(d.addr, &d.token, false)
        .await
        .expect("reconcile request");
    let s = wait_status(d.addr, "refused", |s| {
        s.last_result.as_deref() == Some("refused")
    })
    .await;
    assert_eq!(s.fetched_revision.as_deref(), Some(unsafe_c.as_str()));
    assert_eq!(s.applied_revision.as_deref(), Some(c1.as_str()));
    assert_eq!(s.diagnostics[0].file.to_str(), Some("desired-state/passwd"));
    assert_eq!(inspect(&name).expect("container").0, "good");

    // The next commit is tried as usual.
    std::fs::remove_file(r.work.join("desired-state/passwd")).expect("rm");
    r.write("desired-state/app.env", "MESSAGE=fixed\n");
    let fixed = r.commit_push("fixed");
    client::reconcile(d.addr, &d.token, false)
        .await
        .expect("reconcile request");
    let s = wait_status(d.addr, "fixed apply", |s| {
        s.applied_revision.as_deref() == Some(&fixed)
    })
    .await;
    assert_eq!(s.last_result.as_deref(), Some("success"));
    assert!(s.diagnostics.is_empty() && !s.pending);
    assert_eq!(inspect(&name).expect("container").0, "fixed");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commit_in_watched_repo_is_applied_without_polling() {
    let sc = Scenario::new("local1");
    let r = &sc.r;
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    // The source is the working repository itself, as a plain path.
    let cfg = config(r.work.to_str().expect("utf8"), sc.state.path(), None);
    let d = start_applied(cfg, rec, &sc.c1).await;

    r.write("desired-state/app.env", "MESSAGE=local2\n");
    git(&r.work, &["add", "-A"]);
    git(&r.work, &["commit", "-q", "-m", "local2"]);
    let c2 = r.head();
    let s = wait_status(d.addr, "local commit applied", |s| {
        s.applied_revision.as_deref() == Some(&c2)
    })
    .await;
    assert_eq!(s.last_trigger.as_deref(), Some("local-commit"));
    assert_eq!(inspect(&name).expect("container").0, "local2");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_changes_across_restart_until_resume() {
    let sc = Scenario::new("s1");
    let (r, c1, state) = (&sc.r, &sc.c1, &sc.state);
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    let cfg = config(&r.file_url(), state.path(), None);
    let d = start_applied(cfg.clone(), rec, c1).await;

    client::suspend(d.addr, &d.token).await.expect("suspend");
    r.write("desired-state/app.env", "MESSAGE=s2\n");
    let c2 = r.commit_push("s2");
    client::reconcile(d.addr, &d.token, false)
        .await
        .expect("reconcile");
    let s = wait_status(d.addr, "held", |s| {
        s.fetched_revision.as_deref() == Some(&c2)
    })
    .await;
    let s = if s.last_result.as_deref() == Some("held") {
        s
    } else {
        wait_status(d.addr, "held", |s| s.last_result.as_deref() == Some("held")).await
    };
    assert!(s.suspended && s.pending);
    assert_eq!(s.pending_reason.as_deref(), Some("suspended"));
    assert_eq!(s.applied_revision.as_deref(), Some(c1.as_str()));
    assert_eq!(inspect(&name).expect("container").0, "s1");
    d.stop().await;

    // Restart: still suspended (startup run fetches but does not apply).
    let (rec, _guard2) = sc.reconciler();
    let d = start(cfg, rec).await;
    let s = wait_status(d.addr, "held after restart", |s| {
        s.last_result.as_deref() == Some("held")
    })
    .await;
    assert!(s.suspended);
    assert_eq!(
        s.applied_revision.as_deref(),
        Some(c1.as_str()),
        "applied revision persisted"
    );
    assert_eq!(inspect(&name).expect("container").0, "s1");

    client::resume(d.addr, &d.token).await.expect("resume");
    let s = wait_status(d.addr, "applied after resume", |s| {
        s.applied_revision.as_deref() == Some(&c2)
    })
    .await;
    assert!(!s.suspended && !s.pending);
    assert_eq!(inspect(&name).expect("container").0, "s2");
    d.stop().await;
}

/// Control endpoints answer only to this host; status stays readable from anywhere the
/// listener is bound to (webhooks need a reachable address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_refuse_remote_peers() {
    // An address of this host that is not loopback (no packet is sent by connect on UDP).
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    let Ok(()) = probe.connect("10.255.255.255:9") else {
        eprintln!("no non-loopback route; skipping");
        return;
    };
    let ip = probe.local_addr().expect("addr").ip();
    if ip.is_loopback() || ip.is_unspecified() {
        eprintln!("no non-loopback address; skipping");
        return;
    }
    let sc = Scenario::new("x");
    let state = &sc.state;
    let (rec, _guard) = sc.reconciler();
    let mut cfg = config(&sc.r.file_url(), state.path(), None);
    let port = free_port();
    cfg.listen = Some(format!("0.0.0.0:{port}").parse().expect("addr"));
    let d = start(cfg, rec).await;
    let http = client::http_client();
    let remote = format!("http://{ip}:{port}");
    for path in ["/suspend", "/resume", "/reconcile"] {
        let resp = http
            .post(format!("{remote}{path}"))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }
    assert!(!state.path().join("suspended").exists());
    let resp = http
        .get(format!("{remote}/status"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    client::suspend(local, &d.token)
        .await
        .expect("local suspend allowed");
    assert!(state.path().join("suspended").exists());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_apply_window_changes_are_fetched_and_pending() {
    use chrono::Timelike;
    let sc = Scenario::new("w1");
    let (rec, _guard) = sc.reconciler();
    let name = rec.container();
    let mut cfg = config(&sc.r.file_url(), sc.state.path(), None);
    // A one-hour window that is certainly not now: the hour after next.
    let hour = (chrono::Local::now().hour() + 2) % 24;
    cfg.schedule.apply_window = Some(format!("* * {hour} * * *"));
    let d = start(cfg, rec).await;
    let s = wait_status(d.addr, "held by window", |s| {
        s.last_result.as_deref() == Some("held")
    })
    .await;
    assert_eq!(s.fetched_revision.as_deref(), Some(sc.c1.as_str()));
    assert_eq!(s.applied_revision, None);
    assert!(s.pending);
    assert_eq!(
        s.pending_reason.as_deref(),
        Some("outside the apply window")
    );
    let next = s.next_window.expect("next opening reported");
    assert_eq!(next.with_timezone(&chrono::Local).hour(), hour);
    assert!(
        inspect(&name).is_none(),
        "nothing applied outside the window"
    );
    d.stop().await;
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every provider's signature scheme over real HTTP, and a burst of correctly signed hooks for
/// one push: one reconcile, not one per hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_providers_and_a_burst_of_hooks_coalesces() {
    let OverHttp {
        r,
        c1,
        name,
        d,
        state: _state,
        _http,
        _guard,
        ..
    } = over_http("b1").await;
    let secret = b"correct horse battery staple";

    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let sig = macula_gitops::server::webhook::sign(&body, secret);
    let bad = macula_gitops::server::webhook::sign(&body, b"wrong");
    let cases = [
        (
            "github",
            "X-Hub-Signature-256",
            format!("sha256={sig}"),
            format!("sha256={bad}"),
        ),
        ("gitea", "X-Gitea-Signature", sig.clone(), bad.clone()),
        ("forgejo", "X-Forgejo-Signature", sig.clone(), bad.clone()),
        (
            "gitlab",
            "X-Gitlab-Token",
            String::from_utf8_lossy(secret).into_owned(),
            "wrong".into(),
        ),
        ("generic", "X-Signature-256", sig.clone(), bad.clone()),
    ];
    let http_client = client::http_client();
    let post = |provider: &str, header: &str, value: &str| {
        http_client
            .post(format!("http://{}/hooks/{provider}", d.addr))
            .header(header, value)
            .body(body.clone())
            .send()
    };
    for (provider, header, right, wrong) in &cases {
        let resp = post(provider, header, wrong).await.expect("post");
        assert_eq!(resp.status().as_u16(), 401, "{provider} wrong");
        let resp = post(provider, header, right).await.expect("post");
        assert_eq!(resp.status().as_u16(), 202, "{provider} right");
    }

    let metrics = || async {
        client::http_client()
            .get(format!("http://{}/metrics", d.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    // Let the runs the provider checks asked for finish (they find nothing new).
    let before = wait_status(d.addr, "idle", |s| {
        s.applied_revision.as_deref() == Some(&c1)
    })
    .await;
    assert_eq!(before.last_result.as_deref(), Some("success"));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m0 = metrics().await;

    r.write("desired-state/app.env", "MESSAGE=b2\n");
    let c2 = r.commit_push("b2");
    let burst: Vec<_> = (0..20)
        .map(|_| post("github", "X-Hub-Signature-256", &cases[0].2))
        .collect();
    for resp in futures::future::join_all(burst).await {
        assert_eq!(resp.expect("post").status().as_u16(), 202);
    }
    wait_status(d.addr, "burst applied", |s| {
        s.applied_revision.as_deref() == Some(&c2)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m1 = metrics().await;
    let ok = r#"macula_gitops_reconcile_total{result="success"}"#;
    assert_eq!(
        metric(&m1, ok) - metric(&m0, ok),
        1.0,
        "one reconcile for 20 hooks"
    );
    let fetches = "macula_gitops_fetch_duration_seconds_count";
    let n = metric(&m1, fetches) - metric(&m0, fetches);
    assert!(
        (1.0..=3.0).contains(&n),
        "{n} fetches for a burst of 20 hooks"
    );
    assert_eq!(inspect(&name).expect("container").0, "b2");
    d.stop().await;
}
