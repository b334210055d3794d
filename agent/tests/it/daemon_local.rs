//! The one daemon loop on a local directory, through the agent binary and the real engine: a
//! saved edit is applied without an interval tick (1 h here), the agent's own recreate is not
//! taken for drift, `/status` and the control verbs (`status`, `suspend`, `resume`) reach it, and
//! SIGTERM ends it; an edit's rollout is judged, never rolled back; a crash loop's repair is paced. A socket proxy in front of the Docker socket, cut and restored, shows that
//! a pass fails clearly while the engine is gone and that the agent recovers on its own.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::docker::{container_id, container_state, docker};
use crate::support::fixture::Fixture;
use crate::support::{wait_until, KillOnDrop};

const COMPOSE: &str = "name: t{id}-s\nservices:\n  app:\n    image: {image}\n    container_name: t{id}-app\n    command: sleep 3600\n    environment: {MODE: MODE_VALUE}\n";

fn compose(f: &Fixture, mode: &str) -> String {
    f.fill(COMPOSE).replace("MODE_VALUE", mode)
}

fn mode_of(name: &str) -> String {
    crate::support::docker::env_var(name, "MODE")
}

fn status(f: &Fixture) -> Option<serde_json::Value> {
    let o = f.run("h", &["status", "--output", "json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("status is JSON"))
}

fn wait_status(
    f: &Fixture,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = None;
    wait_until(Duration::from_secs(60), what, || match status(f) {
        Some(v) if pred(&v) => {
            last = Some(v);
            true
        }
        _ => false,
    });
    last.expect("status seen")
}

/// `name{labels} value` lines of the daemon's /metrics, summed for one family.
fn metric(f: &Fixture, family: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", f.listen)])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter(|l| l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
}

#[test]
fn a_saved_edit_is_applied_at_once_and_the_local_daemon_has_the_whole_api() {
    let f = Fixture::new();
    let app = f.name("app");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &compose(&f, "one"));
    let mut d = f.spawn("h", &["run", "--interval", "1h"]);
    wait_until(Duration::from_secs(60), "first apply", || {
        container_state(&app) == "running"
    });
    let s = wait_status(&f, "first pass in status", |s| {
        s["last_result"] == "success"
    });
    let root = f.root().canonicalize().expect("root");
    assert_eq!(s["source_url"], root.display().to_string());
    assert_eq!(s["source_kind"], "dir");
    let text = f.ok("h", &["status"]);
    assert!(
        text.contains(&format!("source:    {} (local directory)", root.display())),
        "{text}"
    );
    let first_rev = s["applied_revision"]
        .as_str()
        .expect("revision")
        .to_string();
    assert!(first_rev.starts_with("dir:"), "{first_rev}");
    let first = container_id(&app);

    // A saved edit: recreated with the new value, long before any interval tick.
    let saved = Instant::now();
    f.write("stacks/s/compose.yaml", &compose(&f, "two"));
    wait_until(Duration::from_secs(30), "edit applied", || {
        container_state(&app) == "running" && mode_of(&app) == "two"
    });
    eprintln!("saved edit running after {:?}", saved.elapsed());
    assert_ne!(container_id(&app), first);
    let s = wait_status(&f, "the edit's pass in status", |s| {
        s["last_trigger"] == "local-edit" && s["last_result"] == "success"
    });
    assert_ne!(s["applied_revision"], first_rev.as_str());
    let changes = &s["outcome"]["changes"];
    assert_eq!(changes[0]["action"]["action"], "recreate", "{s:#}");
    assert_eq!(changes[0]["subject"]["name"], "app");

    // The recreate stopped and removed the old container: that is the pass's own doing, not
    // drift. Give a drift pass time to show up; none may.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&f, "macula_gitops_reconcile_total"),
        2.0,
        "startup + edit only"
    );
    assert_eq!(metric(&f, "macula_gitops_drift_repairs_total"), 0.0);
    assert_eq!(status(&f).expect("status")["last_trigger"], "local-edit");

    // Somebody else's stop is drift, repaired at once.
    docker(&["stop", "-t", "0", &app]);
    wait_until(Duration::from_secs(30), "drift repaired", || {
        container_state(&app) == "running"
    });
    wait_status(&f, "drift pass", |s| s["last_trigger"] == "drift");

    // suspend / resume reach the local daemon (token from its state dir).
    f.ok("h", &["suspend"]);
    f.write("stacks/s/compose.yaml", &compose(&f, "three"));
    let s = wait_status(&f, "held", |s| s["last_result"] == "held");
    assert_eq!(s["pending_reason"], "suspended");
    assert_eq!(mode_of(&app), "two", "nothing applied while suspended");
    f.ok("h", &["resume"]);
    wait_until(Duration::from_secs(30), "applied after resume", || {
        mode_of(&app) == "three"
    });

    // SIGTERM: a clean exit, well within systemd's stop timeout.
    sigterm(&d.0);
    let term = Instant::now();
    let code = loop {
        if let Some(c) = d.0.try_wait().expect("wait") {
            break c;
        }
        assert!(
            term.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("exited {:?} after SIGTERM", term.elapsed());
    assert!(code.success(), "{code:?}");
}

/// A local directory's edit is watched like a git commit: a service that exits after the edit
/// fails its rollout (status says which and why); with no earlier revision to return to, the
/// edit stays applied, and the next edit, fixing it, is judged healthy.
#[test]
fn a_local_edit_is_judged_by_its_rollout_and_never_rolled_back() {
    let f = Fixture::new();
    let app = f.name("app");
    f.agent_config("rollout: {stable: 1s, timeout: 30s}\n");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &compose(&f, "one"));
    let _d = f.spawn("h", &["run", "--interval", "1h"]);
    let s = wait_status(&f, "the first revision healthy", |s| {
        s["rollout"]["phase"] == "healthy"
    });
    let good = s["rollout"]["revision"].clone();
    assert_eq!(s["last_good_revision"], good);

    let broken = compose(&f, "two").replace("sleep 3600", "sh -c 'exit 3'");
    f.write("stacks/s/compose.yaml", &broken);
    let s = wait_status(&f, "the edit's rollout failed", |s| {
        s["rollout"]["phase"] == "failed"
    });
    let why = s["rollout"]["failed"]["s/app"].as_str().unwrap_or_default();
    assert!(why.contains("exited with code 3"), "{s:#}");
    assert_eq!(s["last_good_revision"], good, "{s:#}");
    assert_eq!(mode_of(&app), "two", "not rolled back");

    f.write("stacks/s/compose.yaml", &compose(&f, "three"));
    wait_status(&f, "the fix healthy", |s| {
        s["rollout"]["phase"] == "healthy" && s["rollout"]["revision"] != good
    });
    assert_eq!(mode_of(&app), "three");
    assert_eq!(container_state(&app), "running");
}

/// `socat` serving `sock` and relaying to the engine's socket, in its own process group (its
/// forked children carry the open connections and must go with it).
fn proxy(sock: &Path, engine: &str) -> KillOnDrop {
    use std::os::unix::process::CommandExt;
    let child = Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork,unlink-early", sock.display()))
        .arg(format!("UNIX-CONNECT:{engine}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("socat starts");
    wait_until(Duration::from_secs(10), "proxy socket", || sock.exists());
    KillOnDrop(child)
}

fn cut(p: KillOnDrop) {
    let pgid = nix::unistd::Pid::from_raw(p.0.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    drop(p);
}

#[test]
fn an_engine_cut_off_fails_the_pass_clearly_and_the_agent_recovers_when_it_is_back() {
    let engine = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let f = Fixture::new();
    let app = f.name("app");
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("docker.sock");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &compose(&f, "one"));
    let p = proxy(&sock, &engine);
    let _d = KillOnDrop(
        f.command("h", &["run", "--interval", "1h"])
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    wait_until(
        Duration::from_secs(60),
        "first apply through the proxy",
        || container_state(&app) == "running",
    );
    wait_status(&f, "first pass", |s| s["last_result"] == "success");

    cut(p);
    let edited = Instant::now();
    f.write("stacks/s/compose.yaml", &compose(&f, "two"));
    let s = wait_status(&f, "the pass fails", |s| s["last_result"] == "error");
    eprintln!(
        "pass failed {:?} after the edit, engine cut",
        edited.elapsed()
    );
    let err = s["last_error"].as_str().expect("last_error");
    assert!(
        err.contains(&sock.display().to_string()) && err.contains("is Docker running?"),
        "{err}"
    );
    assert_eq!(mode_of(&app), "one", "the running service is left alone");
    assert_eq!(container_state(&app), "running");

    // Back: the events stream reconnects, its catch-up pass applies the edit, no help needed.
    let restored = Instant::now();
    let _p = proxy(&sock, &engine);
    wait_until(Duration::from_secs(60), "recovered", || {
        mode_of(&app) == "two"
    });
    wait_status(&f, "success again", |s| s["last_result"] == "success");
    eprintln!(
        "recovered {:?} after the engine came back",
        restored.elapsed()
    );
}

/// The engine's `start` events of container `name` from now on, streamed (a replay with
/// `--since` may miss some: the engine keeps only its latest events); `count` ends the stream.
struct Starts(KillOnDrop);

impl Starts {
    fn watch(name: &str) -> Self {
        let child = Command::new("docker")
            .args([
                "events",
                "--format",
                "{{.Action}}",
                "--filter",
                "event=start",
            ])
            .args(["--filter", &format!("container={name}")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker events runs");
        Self(KillOnDrop(child))
    }

    fn count(mut self) -> usize {
        use std::io::Read;
        let _ = self.0 .0.kill();
        let mut text = String::new();
        if let Some(mut out) = self.0 .0.stdout.take() {
            out.read_to_string(&mut text).expect("docker events output");
        }
        text.lines().filter(|l| l.trim() == "start").count()
    }
}

/// A service that ran well, then fails at once on every start (restart policy unset, as compose
/// files often leave it): drift repair restarts it with growing pauses, not back to back, and
/// status says it is paced; a container stopped once by hand is still restarted at once, and one
/// removed by hand again and again is recreated at once each time.
#[test]
fn a_crash_loop_is_restarted_with_growing_pauses_and_a_single_stop_is_not() {
    let f = Fixture::new();
    let (app, crash) = (f.name("app"), f.name("crash"));
    // Its first run leaves a stamp in the container and stays up; any later start fails.
    let extra = f.fill(
        "  crash:\n    image: {image}\n    container_name: t{id}-crash\n    command: sh -c 'test -e /stamp && exit 1; touch /stamp; sleep 3600'\n",
    );
    f.agent_config("rollout: {stable: 1s, timeout: 30s}\n");
    f.write("hosts.yaml", "hosts:\n  default: {stacks: [s]}\n");
    f.write("stacks/s/compose.yaml", &(compose(&f, "one") + &extra));
    let _d = f.spawn("h", &["run", "--interval", "1h"]);
    wait_status(&f, "the revision healthy", |s| {
        s["rollout"]["phase"] == "healthy"
    });

    // Stopped by hand once: every start from now on fails at once.
    let starts = Starts::watch(&crash);
    std::thread::sleep(Duration::from_millis(500)); // the stream is open
    let since = Instant::now();
    docker(&["stop", "-t", "0", &crash]);
    let s = wait_status(&f, "the crash paced in status", |s| {
        s["paced"]["s/crash"].is_string()
    });
    assert!(s["paced"]["s/app"].is_null(), "{s:#}");
    std::thread::sleep(Duration::from_secs(8).saturating_sub(since.elapsed()));
    let starts = starts.count();
    eprintln!("crash loop: {starts} starts in 8 s");
    // Back to back it is a start every few hundred ms (dozens in 8 s); paced, the pauses double
    // from 1 s. Still repaired: the paced repair fires later on its own.
    assert!((2..=6).contains(&starts), "{starts} starts in 8 s");

    // One stop by hand is no crash loop: restarted at once, never paced.
    docker(&["stop", "-t", "0", &app]);
    wait_until(Duration::from_secs(30), "the stopped one restarted", || {
        container_state(&app) == "running"
    });
    let s = status(&f).expect("status");
    assert!(s["paced"]["s/app"].is_null(), "{s:#}");
    // Nor is removing it by hand again and again right after each repair.
    for _ in 0..3 {
        let old = container_id(&app);
        docker(&["rm", "-f", &app]);
        wait_until(Duration::from_secs(30), "the removed one recreated", || {
            container_state(&app) == "running" && container_id(&app) != old
        });
        let s = status(&f).expect("status");
        assert!(s["paced"]["s/app"].is_null(), "{s:#}");
    }
    wait_until(
        Duration::from_secs(60),
        "the text status says paced",
        || {
            f.ok("h", &["status"])
                .contains("paced:     s/crash (crash loop")
        },
    );
}
