//! Source against real git repositories: file://, smart HTTP with basic auth, refs, depth,
//! and refusal of unsafe trees.

use crate::support::git::{git, mute_ssh_server, HttpGit, Repos, SshServer};
use crate::support::processes_naming;
use macula_gitops::config::{AuthConfig, SourceConfig};
use macula_gitops::source::{Source, SourceError, SourceSpec};

fn source(url: &str, reference: Option<&str>, state: &std::path::Path) -> Source {
    let cfg = SourceConfig {
        url: url.into(),
        reference: reference.map(str::to_string),
        ..Default::default()
    };
    Source::new(SourceSpec::from_config(&cfg).expect("spec"), state)
}

#[test]
fn file_url_clone_then_update_gives_immutable_snapshots() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "v1\n");
    let c1 = r.commit_push("first");
    let state = tempfile::tempdir().expect("tmp");
    let src = source(&r.file_url(), Some("main"), state.path());

    let s1 = src.sync().expect("first sync");
    assert_eq!(s1.commit, c1);
    assert_eq!(s1.summary, "first");
    let f1 = s1.desired_root.join("app.txt");
    assert_eq!(std::fs::read_to_string(&f1).expect("read"), "v1\n");

    r.write("desired-state/app.txt", "v2\n");
    let c2 = r.commit_push("second");
    let s2 = src.sync().expect("second sync");
    assert_eq!(s2.commit, c2);
    assert_ne!(s1.snapshot_dir, s2.snapshot_dir);
    assert_eq!(
        std::fs::read_to_string(s2.desired_root.join("app.txt")).expect("read"),
        "v2\n"
    );
    // The first snapshot is untouched: a running container bind-mounting it sees no change.
    assert_eq!(std::fs::read_to_string(&f1).expect("read"), "v1\n");

    // No-op fetch: same commit, same snapshot.
    let s3 = src.sync().expect("third sync");
    assert_eq!(s3.snapshot_dir, s2.snapshot_dir);

    let removed = macula_gitops::source::gc_snapshots(&src.snapshots_dir(), &[&c2]).expect("gc");
    assert_eq!(removed, 1);
    assert!(!s1.snapshot_dir.exists());
    assert!(s2.snapshot_dir.exists());
}

#[test]
fn tag_commit_head_and_local_path_refs() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "tagged\n");
    let tagged = r.commit_push("tagged");
    git(&r.work, &["tag", "-a", "v1.0", "-m", "release"]);
    git(&r.work, &["push", "-q", "origin", "v1.0"]);
    r.write("desired-state/app.txt", "later\n");
    let later = r.commit_push("later");
    let state = tempfile::tempdir().expect("tmp");

    let by_tag = source(&r.file_url(), Some("v1.0"), state.path())
        .sync()
        .expect("tag");
    assert_eq!(by_tag.commit, tagged);
    let by_id = source(&r.file_url(), Some(&tagged), state.path())
        .sync()
        .expect("commit");
    assert_eq!(by_id.commit, tagged);
    let by_head = source(&r.file_url(), None, state.path())
        .sync()
        .expect("HEAD");
    assert_eq!(by_head.commit, later);
    // A plain local path to a non-bare repo works too.
    let local = source(r.work.to_str().expect("utf8"), Some("main"), state.path())
        .sync()
        .expect("local path");
    assert_eq!(local.commit, later);

    let missing = source(&r.file_url(), Some("no-such-branch"), state.path()).sync();
    assert!(
        matches!(missing, Err(SourceError::Resolve { .. })),
        "{missing:?}"
    );
}

#[test]
fn path_selects_subdirectory_and_depth_is_shallow() {
    let r = Repos::new();
    r.write("infra/lab/desired-state/app.txt", "sub\n");
    r.write("README", "x\n");
    r.commit_push("one");
    r.write("infra/lab/desired-state/app.txt", "sub2\n");
    let c = r.commit_push("two");
    let state = tempfile::tempdir().expect("tmp");
    let cfg = SourceConfig {
        url: r.file_url(),
        reference: Some("main".into()),
        path: Some("infra/lab".into()),
        depth: Some(1),
        ..Default::default()
    };
    let src = Source::new(SourceSpec::from_config(&cfg).expect("spec"), state.path());
    let s = src.sync().expect("sync");
    assert_eq!(s.commit, c);
    assert_eq!(
        std::fs::read_to_string(s.desired_root.join("app.txt")).expect("read"),
        "sub2\n"
    );
    assert!(!s.snapshot_dir.join("README").exists());
    let cache = std::fs::read_dir(state.path().join("cache"))
        .expect("cache")
        .next()
        .expect("one cache")
        .expect("entry")
        .path();
    assert!(
        cache.join("shallow").is_file(),
        "depth 1 makes a shallow cache"
    );
}

#[test]
fn smart_http_fetch_and_credential_safety() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "http\n");
    let c = r.commit_push("over http");
    let root = r.bare.parent().expect("parent");
    let open = HttpGit::start(root, None);
    let state = tempfile::tempdir().expect("tmp");
    let s = source(&open.url("lab.git"), Some("main"), state.path())
        .sync()
        .expect("anonymous smart-http fetch");
    assert_eq!(s.commit, c);

    // A server that wants basic auth refuses an anonymous fetch...
    let locked = HttpGit::start(root, Some(("alice", "s3cret")));
    let anon = tempfile::tempdir().expect("tmp");
    let denied = source(&locked.url("lab.git"), Some("main"), anon.path()).sync();
    assert!(
        matches!(denied, Err(SourceError::Fetch { .. })),
        "{denied:?}"
    );

    // ...and credentials are never sent in clear text over plain http.
    let secret = anon.path().join("pw");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let cfg = SourceConfig {
        url: locked.url("lab.git"),
        reference: Some("main".into()),
        auth: AuthConfig {
            username: Some("alice".into()),
            password_file: Some(secret),
            ..Default::default()
        },
        ..Default::default()
    };
    let src = Source::new(SourceSpec::from_config(&cfg).expect("spec"), anon.path());
    match src.sync() {
        Err(SourceError::Fetch { message, .. }) => {
            assert!(message.contains("clear text"), "{message}");
            assert!(!message.contains("s3cret"), "secret leaked: {message}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn dotdot_entry_is_refused() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "ok\n");
    let good = r.commit_push("good");
    // Craft a tree with an entry named `..` (git itself refuses to create one).
    let blob = git(&r.work, &["hash-object", "-w", "desired-state/app.txt"]);
    let mut raw = b"100644 ..\0".to_vec();
    raw.extend(hex_to_bytes(&blob));
    let raw_path = r.tmp.path().join("raw-tree");
    std::fs::write(&raw_path, raw).expect("write");
    let evil_tree = git(
        &r.work,
        &[
            "hash-object",
            "-t",
            "tree",
            "-w",
            "--literally",
            raw_path.to_str().expect("utf8"),
        ],
    );
    let root = mktree(&r, &[("040000 tree", &evil_tree, "desired-state")]);
    let evil = git(&r.work, &["commit-tree", &root, "-p", &good, "-m", "evil"]);
    git(
        &r.work,
        &["push", "-q", "origin", &format!("{evil}:refs/heads/main")],
    );

    let state = tempfile::tempdir().expect("tmp");
    let res = source(&r.file_url(), Some("main"), state.path()).sync();
    match res {
        Err(SourceError::Unsafe { commit, problems }) => {
            assert_eq!(commit, evil);
            assert!(problems[0].message.contains(".."), "{problems:?}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let leftovers = std::fs::read_dir(state.path().join("snapshots"))
        .expect("dir")
        .count();
    assert_eq!(leftovers, 0, "nothing of a refused commit stays on disk");
}

#[test]
fn symlink_escapes_are_refused_but_inner_links_work() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "ok\n");
    std::os::unix::fs::symlink("app.txt", r.work.join("desired-state/inner")).expect("ln");
    let good = r.commit_push("inner link");
    let state = tempfile::tempdir().expect("tmp");
    let src = source(&r.file_url(), Some("main"), state.path());
    let s = src.sync().expect("inner symlink is fine");
    assert_eq!(s.commit, good);
    assert_eq!(
        std::fs::read_to_string(s.desired_root.join("inner")).expect("read"),
        "ok\n"
    );

    std::os::unix::fs::symlink("../../../../etc/passwd", r.work.join("desired-state/leak"))
        .expect("ln");
    std::os::unix::fs::symlink("/etc/shadow", r.work.join("desired-state/abs")).expect("ln");
    // Each link alone looks inside; chained they escape.
    std::os::unix::fs::symlink(".", r.work.join("desired-state/self")).expect("ln");
    std::os::unix::fs::symlink("self/self/../..", r.work.join("desired-state/chain")).expect("ln");
    let bad = r.commit_push("escape");
    match src.sync() {
        Err(SourceError::Unsafe { commit, problems }) => {
            assert_eq!(commit, bad);
            let files: Vec<_> = problems
                .iter()
                .map(|p| p.file.display().to_string())
                .collect();
            for f in [
                "desired-state/leak",
                "desired-state/abs",
                "desired-state/chain",
            ] {
                assert!(files.contains(&f.to_string()), "{f} not in {files:?}");
            }
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

fn mktree(r: &Repos, entries: &[(&str, &str, &str)]) -> String {
    let input: String = entries
        .iter()
        .map(|(mode_kind, id, name)| format!("{mode_kind} {id}\t{name}\n"))
        .collect();
    let mut child = std::process::Command::new("git")
        .current_dir(&r.work)
        .args(["mktree", "--missing"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git mktree");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("mktree");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn ssh_with_key_and_known_hosts() {
    if !std::path::Path::new("/usr/sbin/sshd").exists() {
        eprintln!("openssh-server not installed; skipping");
        return;
    }
    let r = Repos::new();
    r.write("desired-state/app.txt", "ssh\n");
    let c = r.commit_push("over ssh");
    let (server, key, known_hosts) = SshServer::start();
    let url = server.url(&r.bare);
    let with = |key: &std::path::Path, kh: &std::path::Path| {
        let state = tempfile::tempdir().expect("tmp");
        let cfg = SourceConfig {
            url: url.clone(),
            reference: Some("main".into()),
            auth: AuthConfig {
                ssh_key: Some(key.to_path_buf()),
                known_hosts: Some(kh.to_path_buf()),
                ..Default::default()
            },
            ..Default::default()
        };
        Source::new(SourceSpec::from_config(&cfg).expect("spec"), state.path())
            .sync()
            .map(|o| o.commit)
    };
    assert_eq!(with(&key, &known_hosts).expect("fetch over ssh"), c);

    // An unknown host key is refused (no trust on first use).
    let empty = server.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    assert!(matches!(with(&key, &empty), Err(SourceError::Fetch { .. })));

    // A key the server does not know is refused.
    let other = server.dir.path().join("other");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("keygen");
    assert!(st.success());
    assert!(matches!(
        with(&other, &known_hosts),
        Err(SourceError::Fetch { .. })
    ));
}

/// A sync of `ssh://<userinfo>@127.0.0.1:<port>/lab.git` with `connect: 1s`, `idle: 60s` and
/// `total`.
fn ssh_sync(port: u16, userinfo: &str, total: &str) -> Result<String, SourceError> {
    let state = tempfile::tempdir().expect("tmp");
    let cfg = SourceConfig {
        url: format!("ssh://{userinfo}@127.0.0.1:{port}/lab.git"),
        timeouts: macula_gitops::config::FetchTimeoutsConfig {
            connect: Some("1s".into()),
            idle: Some("60s".into()),
            total: Some(total.into()),
        },
        ..Default::default()
    };
    let src = Source::new(SourceSpec::from_config(&cfg).expect("spec"), state.path());
    src.sync().map(|o| o.commit)
}

#[test]
fn ssh_fetch_ends_at_the_total_deadline_and_leaves_no_ssh_running() {
    let port = mute_ssh_server(true);
    let started = std::time::Instant::now();
    let err = ssh_sync(port, "git:hunter2", "3s").expect_err("a mute server gives no revision");
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Fetch { .. }), "{msg}");
    assert!(
        msg.contains(&format!("ssh://***@127.0.0.1:{port}/lab.git")),
        "{msg}"
    );
    assert!(msg.contains("source.timeouts.total (3s)"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    // Ended, not hung: ssh itself would wait in the key exchange for as long as the server lives.
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    eprintln!("mute ssh server: {msg} (after {took:?})");
    let left = processes_naming(&format!("-p{port}"));
    assert!(left.is_empty(), "ssh still running: {left:?}");
}

#[test]
fn ssh_server_without_a_banner_fails_at_the_connect_deadline() {
    let port = mute_ssh_server(false);
    let err = ssh_sync(port, "git", "5m")
        .expect_err("no banner, no revision")
        .to_string();
    eprintln!("silent ssh server: {err}");
    assert!(err.contains("source.timeouts.connect (1s)"), "{err}");
    assert!(err.contains("banner exchange"), "{err}");
    let left = processes_naming(&format!("-p{port}"));
    assert!(left.is_empty(), "ssh still running: {left:?}");
}
