//! Notifications and commit status against local HTTP receivers (`support::receiver`): each
//! format's and each forge's documented request byte for byte (method, path, headers, body,
//! HMAC signature), de-duplication, retries, the bounded queue, and that no secret reaches
//! status, metrics or an error. The agent config is read from a real file.

use std::time::Duration;

use chrono::TimeZone;
use hmac::{KeyInit, Mac};
use macula_gitops::config::AgentConfig;
use macula_gitops::notify::sink::delivery_id;
use macula_gitops::notify::{self, Event, EventKind, Notifier, Outcome, ServiceChange};
use macula_gitops::server::metrics::Metrics;

use crate::support::receiver::{Received, Receiver, Silent};

const SHA: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const WAIT: Duration = Duration::from_secs(30);

fn failed_event() -> Event {
    let mut e = Event::new(EventKind::Failed, "lab-01", SHA)
        .with_errors(["apps/web: container exited with code 1"]);
    e.author = "Ann Example <ann@example.org>".into();
    e.summary = "web: bump image to 2.1 & <fix>".into();
    e.services = vec![ServiceChange {
        service: "apps/web".into(),
        change: "recreated (image)".into(),
    }];
    e.at = chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 19, 0, 0)
        .unwrap();
    e
}

/// The agent config `yaml` from a real file, resolved with its secrets.
fn settings(dir: &std::path::Path, yaml: &str) -> notify::Settings {
    let path = dir.join("agent.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = AgentConfig::load(&path, true).unwrap();
    notify::config::settings(&cfg).unwrap()
}

fn by_path<'a>(seen: &'a [Received], prefix: &str) -> &'a Received {
    seen.iter()
        .find(|r| r.path.starts_with(prefix))
        .unwrap_or_else(|| panic!("no request to {prefix}: {seen:?}"))
}

#[tokio::test]
async fn every_sink_sends_its_documented_request() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        p.display().to_string()
    };
    let slack = file("slack", &format!("{}/slack/T0/B0/s3cr3t", recv.url));
    let discord = file("discord", &format!("{}/discord/42/d1sc0rd", recv.url));
    let hmac_key = file("hmac", "k3y");
    let matrix_token = file("matrix", "syt_m4trix");
    // One sink reads its URL from the environment (a unique name: the test binary is shared).
    let mm_var = format!("MM_URL_{}", crate::support::unique_id());
    std::env::set_var(&mm_var, format!("{}/mattermost/hooks/m4tt3r", recv.url));
    let ntfy_token = file("ntfy", "tk_ntfy");
    let u = &recv.url;
    let s = settings(
        dir.path(),
        &format!(
            r#"
host: lab-01
notifications:
  sinks:
    - {{type: json, url: "{u}/json", secret_file: {hmac_key}}}
    - {{type: ntfy, url: "{u}/ntfy/lab-alerts", token_file: {ntfy_token}}}
    - {{type: slack, url_file: {slack}}}
    - {{type: discord, url_file: {discord}}}
    - {{type: mattermost, url_env: {mm_var}}}
    - {{type: matrix, url: "{u}/", room: "!ops:example.org", token_file: {matrix_token}}}
"#
        ),
    );
    let metrics = Metrics::new();
    let n = Notifier::start_http(s, metrics.notify.clone());
    let e = failed_event();
    n.publish(&e);
    let seen = recv.wait_for(6, WAIT).await;
    assert_eq!(seen.len(), 6, "{seen:?}");
    let text = "lab-01: failed to apply 1a2b3c4 \"web: bump image to 2.1 & <fix>\" by Ann Example <ann@example.org>\n- apps/web: recreated (image)\n- apps/web: container exited with code 1";
    let quoted = serde_json::to_string(text).unwrap();
    let ua = concat!("macula-gitops/", env!("CARGO_PKG_VERSION"));

    let json = by_path(&seen, "/json");
    assert_eq!(json.method, "POST");
    let body = format!(
        r#"{{"event":"failed","host":"lab-01","revision":"{SHA}","author":"Ann Example <ann@example.org>","summary":"web: bump image to 2.1 & <fix>","services":[{{"service":"apps/web","change":"recreated (image)"}}],"errors":["apps/web: container exited with code 1"],"at":"2026-11-30T19:00:00Z","text":{quoted}}}"#
    );
    assert_eq!(json.text(), body);
    // Verified the way a receiver would: HMAC-SHA256 of the raw body with the shared key.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k3y").unwrap();
    mac.update(body.as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(json.header("x-macula-signature-256"), Some(want.as_str()));
    assert_eq!(json.header("x-macula-event"), Some("failed"));
    assert_eq!(
        json.header("x-macula-delivery"),
        Some(delivery_id(&e).as_str())
    );
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.header("user-agent"), Some(ua));

    let ntfy = by_path(&seen, "/ntfy/");
    assert_eq!(
        (ntfy.method.as_str(), ntfy.path.as_str()),
        ("POST", "/ntfy/")
    );
    assert_eq!(
        ntfy.text(),
        format!(
            r#"{{"topic":"lab-alerts","title":"lab-01: failed to apply 1a2b3c4","message":{quoted},"priority":4,"tags":["x"]}}"#
        )
    );
    assert_eq!(ntfy.header("authorization"), Some("Bearer tk_ntfy"));

    let slack = by_path(&seen, "/slack/T0/B0/s3cr3t");
    assert_eq!(slack.method, "POST");
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert_eq!(
        slack.text(),
        format!(r#"{{"text":{}}}"#, serde_json::to_string(&escaped).unwrap())
    );

    let discord = by_path(&seen, "/discord/42/d1sc0rd");
    assert_eq!(
        discord.text(),
        format!(r#"{{"content":{quoted},"allowed_mentions":{{"parse":[]}}}}"#)
    );

    let mm = by_path(&seen, "/mattermost/hooks/m4tt3r");
    assert_eq!(mm.text(), format!(r#"{{"text":{quoted}}}"#));

    let matrix = by_path(&seen, "/_matrix/");
    assert_eq!(matrix.method, "PUT");
    assert_eq!(
        matrix.path,
        format!(
            "/_matrix/client/v3/rooms/%21ops%3Aexample%2Eorg/send/m.room.message/{}",
            delivery_id(&e)
        )
    );
    assert_eq!(matrix.header("authorization"), Some("Bearer syt_m4trix"));
    assert_eq!(
        matrix.text(),
        format!(r#"{{"msgtype":"m.notice","body":{quoted}}}"#)
    );

    // Status and metrics: every target sent once; no URL path, token or key anywhere.
    let status = wait_targets(&n, |t| t.iter().all(|t| t.sent == 1)).await;
    let shown = serde_json::to_string(&status).unwrap() + &metrics.render();
    assert!(
        shown.contains(r#"macula_gitops_notifications_total{target="slack",result="sent"} 1"#),
        "{shown}"
    );
    for secret in [
        "s3cr3t",
        "d1sc0rd",
        "m4tt3r",
        "k3y",
        "syt_m4trix",
        "tk_ntfy",
    ] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    std::env::remove_var(&mm_var);
}

/// Poll the notifier's status until `done` holds (bounded wait, not a timing assertion).
async fn wait_targets(
    n: &Notifier,
    done: impl Fn(&[notify::TargetStatus]) -> bool,
) -> Vec<notify::TargetStatus> {
    let start = std::time::Instant::now();
    loop {
        let t = n.targets();
        if done(&t) {
            return t;
        }
        assert!(start.elapsed() < WAIT, "targets never settled: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_same_failure_is_sent_once_and_news_at_once() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        &format!(
            "notifications:\n  sinks:\n    - {{type: json, url: \"{}/hook\", template: \"{{event}} {{short}}{{errors}}\"}}\n",
            recv.url
        ),
    );
    let n = Notifier::start_http(s, Metrics::new().notify.clone());
    let fail = failed_event();
    for _ in 0..3 {
        n.publish(&fail); // three passes ending the same way
    }
    let other = fail.clone().with_errors(["apps/web: unhealthy"]);
    n.publish(&other);
    let mut ok = Event::new(EventKind::Applied, "lab-01", SHA);
    ok.at = fail.at;
    n.publish(&ok);
    n.publish(&fail); // broken again after a fix: news
                      // Delivery is in order per sink: once the last arrives, the duplicates would have too.
    let seen = recv.wait_for(4, WAIT).await;
    let texts: Vec<String> = seen
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "failed 1a2b3c4\n- apps/web: container exited with code 1",
            "failed 1a2b3c4\n- apps/web: unhealthy",
            "applied 1a2b3c4",
            "failed 1a2b3c4\n- apps/web: container exited with code 1",
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.requests().len(), 4, "a suppressed duplicate was sent");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_and_a_refusal_is_not() {
    let recv = Receiver::start().await;
    recv.answer(&[503, 502]);
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        &format!(
            "notifications:\n  attempts: 3\n  sinks:\n    - {{name: flaky, type: json, url: \"{u}/flaky\"}}\n",
            u = recv.url
        ),
    );
    let metrics = Metrics::new();
    let n = Notifier::start_http(s, metrics.notify.clone());
    n.publish(&failed_event());
    let seen = recv.wait_for(3, WAIT).await;
    assert!(
        seen.iter().all(|r| r.body == seen[0].body),
        "a retry sends the same body"
    );
    let t = wait_targets(&n, |t| t[0].last_result.is_some()).await;
    assert_eq!(
        (t[0].last_result, t[0].sent),
        (Some(Outcome::Sent), 1),
        "{t:?}"
    );

    // 404: the hook is gone; retrying cannot help.
    recv.answer(&[404]);
    n.publish(&failed_event().with_errors(["other"]));
    let t = wait_targets(&n, |t| t[0].failed == 1).await;
    assert_eq!(t[0].last_error.as_deref(), Some("HTTP 404"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.requests().len(), 4);
    let m = metrics.render();
    assert!(
        m.contains(r#"macula_gitops_notifications_total{target="flaky",result="failed"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_dead_receiver_never_holds_the_publisher_and_leaks_no_url() {
    let silent = Silent::start().await;
    let closed = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    std::fs::write(
        &url_file,
        format!("http://127.0.0.1:{closed}/hooks/T0/t0ps3cret"),
    )
    .unwrap();
    let s = settings(
        dir.path(),
        &format!(
            "notifications:\n  queue: 1\n  attempts: 1\n  timeout: 1s\n  sinks:\n    - {{name: silent, type: json, url: \"{}/x\"}}\n    - {{name: gone, type: slack, url_file: {}}}\n",
            silent.url,
            url_file.display()
        ),
    );
    let metrics = Metrics::new();
    let n = Notifier::start_http(s, metrics.notify.clone());
    for i in 0..5 {
        // Five different failures in one go: the queue holds one, the rest are dropped.
        n.publish(&failed_event().with_errors([format!("e{i}")]));
    }
    // Every event ends dropped or failed; the deliveries end after the drops.
    let t = wait_targets(&n, |t| t.iter().all(|t| t.failed == 5)).await;
    let silent_t = t.iter().find(|t| t.name == "silent").unwrap();
    let m = metrics.render();
    assert!(m.contains(r#"target="silent",result="dropped""#), "{m}");
    let gone = t.iter().find(|t| t.name == "gone").unwrap();
    let err = gone.last_error.clone().unwrap_or_default();
    assert!(err.contains("Connection refused"), "{err}");
    let late = silent_t.last_error.clone().unwrap_or_default();
    assert!(late.contains("timed out"), "{late}");
    let shown = serde_json::to_string(&t).unwrap() + &m;
    assert!(
        !shown.contains("t0ps3cret") && !shown.contains("/hooks/"),
        "{shown}"
    );
}

/// The flush gives a hung receiver up at its deadline (not the 10-minute call deadline), and
/// what it left unsent is not remembered as sent: after a restart the same failure is told,
/// once.
#[tokio::test]
async fn an_event_left_unsent_at_the_flush_deadline_is_told_after_a_restart() {
    let silent = Silent::start().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("notify-sent.json");
    let to = |url: &str| {
        let mut s = settings(
            dir.path(),
            &format!("notifications:\n  timeout: 10m\n  sinks:\n    - {{name: chat, type: json, url: \"{url}/hook\"}}\n"),
        );
        s.history = Some(history.clone());
        Notifier::start_http(s, Metrics::new().notify.clone())
    };
    let n = to(&silent.url);
    n.publish(&failed_event());
    let left = n.flush(Duration::from_millis(300)).await;
    assert_eq!(left, [("chat".to_string(), 1)]);
    assert_eq!(n.targets()[0].last_result, Some(Outcome::Dropped));

    let n = to(&recv.url);
    n.publish(&failed_event());
    n.publish(&failed_event());
    assert!(n.flush(WAIT).await.is_empty());
    let seen = recv.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("x-macula-event"), Some("failed"));
}

#[tokio::test]
async fn commit_status_follows_each_forges_documented_api() {
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "f0rg3tok\n").unwrap();
    let u = &recv.url;
    let cases = [
        (
            "github",
            "https://bot:x@github.example/acme/lab.git",
            format!("{u}/gh"),
            "/gh/repos/acme/lab/statuses",
        ),
        (
            "forgejo",
            "ssh://git@forge.lab:2222/acme/lab.git",
            format!("{u}/api/v1"),
            "/api/v1/repos/acme/lab/statuses",
        ),
        (
            "gitlab",
            "git@gitlab.example:group/sub/lab.git",
            format!("{u}/api/v4"),
            "/api/v4/projects/group%2Fsub%2Flab/statuses",
        ),
    ];
    let start = chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 19, 0, 0)
        .unwrap();
    for (i, (provider, source, api, path)) in cases.iter().enumerate() {
        let s = settings(
            dir.path(),
            &format!(
                "host: lab-01\nsource: {{url: \"{source}\"}}\ncommit_status: {{provider: {provider}, api_url: \"{api}\", token_file: {}, target_url: \"https://lab-01.example/status\"}}\n",
                token.display()
            ),
        );
        let n = Notifier::start_http(s, Metrics::new().notify.clone());
        let mut applying = Event::new(EventKind::Applying, "lab-01", SHA);
        applying.at = start;
        n.publish(&applying);
        let mut done = failed_event();
        done.kind = EventKind::RolledBack;
        n.publish(&done);
        n.publish(&done); // unchanged: not set again
        let mut drift = Event::new(EventKind::DriftRepaired, "lab-01", SHA);
        drift.at = start;
        n.publish(&drift); // says nothing about the commit
        let seen = recv.wait_for(2 * (i + 1), WAIT).await;
        let mine = &seen[2 * i..];
        for r in mine {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, format!("{path}/{SHA}"));
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        // GitHub and Gitea/Forgejo take the same body; GitLab names the context `name`.
        let (pending, failure, auth) = match *provider {
            "github" => ("pending", "failure", ("authorization", "Bearer f0rg3tok")),
            "forgejo" => ("pending", "failure", ("authorization", "token f0rg3tok")),
            _ => ("running", "failed", ("private-token", "f0rg3tok")),
        };
        let body = |state: &str, description: &str| match *provider {
            "gitlab" => format!(
                r#"{{"state":"{state}","name":"lab-01","description":"{description}","target_url":"https://lab-01.example/status"}}"#
            ),
            _ => format!(
                r#"{{"state":"{state}","target_url":"https://lab-01.example/status","description":"{description}","context":"lab-01"}}"#
            ),
        };
        assert_eq!(mine[0].text(), body(pending, "applying on lab-01"));
        assert_eq!(
            mine[1].text(),
            body(
                failure,
                "rolled back on lab-01: apps/web: container exited with code 1"
            )
        );
        assert_eq!(mine[0].header(auth.0), Some(auth.1));
        if *provider == "github" {
            assert_eq!(
                mine[0].header("accept"),
                Some("application/vnd.github+json")
            );
            assert_eq!(mine[0].header("x-github-api-version"), Some("2022-11-28"));
        }
        let t = wait_targets(&n, |t| t[0].sent == 2).await;
        assert_eq!(
            t[0].name,
            format!(
                "commit-status/{}",
                if *provider == "forgejo" {
                    "gitea"
                } else {
                    provider
                }
            )
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recv.requests().len(),
        6,
        "an unchanged status was set again"
    );
}

#[test]
fn config_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    let err = |yaml: &str| {
        std::fs::write(&path, yaml).unwrap();
        AgentConfig::load(&path, true).unwrap_err().to_string()
    };
    assert_eq!(
        err("notifications:\n  sinks:\n    - {type: slack, url: \"https://hooks.slack.com/services/T/B/x\"}\n"),
        "notifications.sinks[0].url: this webhook URL is its secret: give it in url_file or url_env"
    );
    assert!(err(
        "notifications:\n  sinks:\n    - {type: json, url: \"http://h/x\", template: \"{hots}\"}\n"
    )
    .starts_with("notifications.sinks[0].template: unknown placeholder {hots} at character 0"));
    assert_eq!(
        err("notifications:\n  sinks:\n    - {type: matrix, url: \"https://m.example\", token_env: T}\n"),
        "notifications.sinks[0].room: required for matrix (`!id:server`)"
    );
    assert_eq!(
        err("notifications:\n  sinks:\n    - {type: json, url: \"https://u:p@h/x\"}\n"),
        "notifications.sinks[0].url: credentials in an inline URL would be shown; use url_file or url_env"
    );
    assert_eq!(
        err("source: {url: /srv/repo}\ncommit_status: {provider: github, token_env: T}\n"),
        "commit_status.repository: required: the source URL does not name a forge repository"
    );
    let e = err("notifications:\n  sinks:\n    - {type: ntfy, url: \"https://ntfy.sh/x\", events: [exploded]}\n");
    assert!(e.contains("agent.yaml:3") && e.contains("exploded"), "{e}");
}

/// The daemon wired to its notifier: a real repo, the real reconciler on the engine, a sink and
/// a Forgejo-style status API on one receiver. A good commit is told once with its author and
/// subject and gets pending then success; a broken one gets failure and is told once however
/// often it is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_each_outcome_once_and_sets_the_commit_status() {
    use crate::support::daemon::{config, start, start_applied, wait_status, Scenario};
    use macula_gitops::server::client;

    let recv = Receiver::start().await;
    let sc = Scenario::new("good");
    let (rec, _guard) = sc.reconciler();
    let token = sc.state.path().join("forge-token");
    std::fs::write(&token, "f0rg3tok\n").unwrap();
    let yaml = format!(
        "notifications:\n  sinks:\n    - {{type: json, url: \"{u}/hook\", template: \"{{event}} {{short}}\"}}\ncommit_status: {{provider: forgejo, api_url: \"{u}/api/v1\", repository: acme/lab, token_file: {t}}}\n",
        u = recv.url,
        t = token.display()
    );
    let extra: AgentConfig = serde_yaml::from_str(&yaml).unwrap();
    // Over smart HTTP with polling off: only this test's `reconcile` calls start passes (a
    // `file://` source would also be watched, adding passes of its own).
    let http = crate::support::git::HttpGit::start(sc.r.bare.parent().unwrap(), None);
    let mut cfg = config(&http.url("lab.git"), &sc.state.path().join("state"), None);
    cfg.notifications = extra.notifications;
    cfg.commit_status = extra.commit_status;
    let d = start_applied(cfg.clone(), rec, &sc.c1).await;

    let hooks = |seen: &[Received]| -> Vec<serde_json::Value> {
        seen.iter()
            .filter(|r| r.path == "/hook")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    let statuses = |seen: &[Received]| -> Vec<(String, String)> {
        seen.iter()
            .filter(|r| r.path.starts_with("/api/v1/repos/acme/lab/statuses/"))
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let sha = r.path.rsplit('/').next().unwrap().to_string();
                (sha, v["state"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let seen = recv.wait_for(3, WAIT).await;
    let applied = hooks(&seen);
    assert_eq!(applied.len(), 1, "{seen:?}");
    assert_eq!(applied[0]["event"], "applied");
    assert_eq!(applied[0]["summary"], "good");
    assert_eq!(applied[0]["author"], "test <test@example.invalid>");
    assert_eq!(
        statuses(&seen),
        [
            (sc.c1.clone(), "pending".to_string()),
            (sc.c1.clone(), "success".to_string())
        ]
    );

    sc.r.write(
        "desired-state/app.env",
        "MESSAGE=bad\nthis is not an env line\n",
    );
    let broken = sc.r.commit_push("broken");
    for _ in 0..2 {
        // The operator retries the broken commit: a second identical outcome.
        client::reconcile(d.addr, &d.token, false).await.unwrap();
        wait_status(d.addr, "invalid pass", |s| {
            s.last_result.as_deref() == Some("invalid")
                && s.fetched_revision.as_deref() == Some(broken.as_str())
        })
        .await;
    }
    // The second pass is done once its notification was suppressed (counted at publish).
    wait_metric(
        d.addr,
        r#"macula_gitops_notifications_total{target="json",result="suppressed"} 1"#,
    )
    .await;
    // 2 messages; statuses: c1 pending+success, the broken commit pending+failure per pass.
    let seen = recv.wait_for(8, WAIT).await;
    let told: Vec<String> = hooks(&seen)
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        told,
        [
            format!("applied {}", &sc.c1[..7]),
            format!("invalid {}", &broken[..7])
        ]
    );
    let broken_states: Vec<String> = statuses(&seen)
        .into_iter()
        .filter(|(sha, _)| *sha == broken)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(broken_states, ["pending", "failure", "pending", "failure"]);
    let st = wait_status(d.addr, "deliveries counted", |s| {
        s.notifications.iter().map(|t| t.sent).sum::<u64>() == 8
    })
    .await;
    let forge = st
        .notifications
        .iter()
        .find(|t| t.name == "commit-status/gitea")
        .expect("the status target is listed");
    assert_eq!(forge.failed, 0, "{forge:?}");
    assert!(!serde_json::to_string(&st).unwrap().contains("f0rg3tok"));
    d.stop().await;

    // A restart re-reads the broken commit and fails the same way: people were told already.
    let (rec, _guard2) = sc.reconciler();
    let d = start(cfg, rec).await;
    wait_status(d.addr, "the restarted daemon's pass", |s| {
        s.last_result.as_deref() == Some("invalid")
    })
    .await;
    wait_metric(
        d.addr,
        r#"macula_gitops_notifications_total{target="json",result="suppressed"} 1"#,
    )
    .await;
    let seen = recv.wait_for(10, WAIT).await;
    assert_eq!(hooks(&seen).len(), 2, "{seen:?}");
    d.stop().await;
}

/// Poll the daemon's `/metrics` until it has `line` (bounded; not a timing assertion).
async fn wait_metric(addr: std::net::SocketAddr, line: &str) {
    let http = macula_gitops::server::client::http_client();
    let mut m = String::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("http://{addr}/metrics")).send().await {
            m = r.text().await.unwrap_or_default();
            if m.contains(line) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/metrics never showed {line}: {m}");
}

/// SIGTERM right after a pass: its notification still goes out before the daemon exits — a
/// retry pause is cut short — while a receiver that never answers is given up at the flush
/// deadline and counted as dropped (the exit is not held by its 10-minute call deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_pass_is_told_before_the_daemon_exits_and_a_hung_receiver_does_not_hold_it() {
    use crate::support::daemon::{config, start, wait_status, Scenario};

    let recv = Receiver::start().await;
    // The first try fails: the delivery waits in its retry pause when the daemon stops.
    recv.answer(&[503]);
    let silent = Silent::start().await;
    let sc = Scenario::new("good");
    let (rec, _guard) = sc.reconciler();
    let yaml = format!(
        "notifications:\n  timeout: 10m\n  sinks:\n    - {{name: flaky, type: json, url: \"{}/hook\", template: \"{{event}} {{short}}\"}}\n    - {{name: hung, type: json, url: \"{}/hook\"}}\n",
        recv.url, silent.url
    );
    let extra: AgentConfig = serde_yaml::from_str(&yaml).unwrap();
    let http = crate::support::git::HttpGit::start(sc.r.bare.parent().unwrap(), None);
    let mut cfg = config(&http.url("lab.git"), &sc.state.path().join("state"), None);
    cfg.notifications = extra.notifications;
    let d = start(cfg, rec).await;
    wait_status(d.addr, "first apply", |s| {
        s.applied_revision.as_deref() == Some(sc.c1.as_str())
    })
    .await;
    let metrics = d.metrics.clone();
    d.stop().await;

    // Once the daemon has returned: the refused try and the retry that was delivered.
    let seen = recv.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for r in &seen {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["text"], format!("applied {}", &sc.c1[..7]), "{seen:?}");
    }
    let m = metrics.render();
    for line in [
        r#"macula_gitops_notifications_total{target="flaky",result="sent"} 1"#,
        r#"macula_gitops_notifications_total{target="hung",result="dropped"} 1"#,
    ] {
        assert!(m.contains(line), "{line} not in {m}");
    }
}
