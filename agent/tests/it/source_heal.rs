//! Self-healing git cache against real repositories: a truncated pack and a config git cannot
//! parse are moved aside and the next sync fetches afresh — no hand work, no failing polls.

use crate::support::git::Repos;
use macula_gitops::config::SourceConfig;
use macula_gitops::source::{Source, SourceSpec};

fn source(r: &Repos, state: &std::path::Path) -> Source {
    let cfg = SourceConfig {
        url: r.file_url(),
        reference: Some("main".into()),
        ..Default::default()
    };
    Source::new(SourceSpec::from_config(&cfg).expect("spec"), state)
}

/// The one cache dir under `<state>/cache` (the `*.git` that is not a moved-aside copy).
fn cache(state: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(state.join("cache"))
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().and_then(|x| x.to_str()) == Some("git"))
        .expect("a cache repo")
}

fn moved_aside(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("cache"))
        .expect("cache dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".git.broken-"))
        .count()
}

#[test]
fn truncated_pack_is_moved_aside_and_refetched() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "v1\n");
    r.write("desired-state/keep.txt", "unchanged\n");
    r.commit_push("first");
    let state = tempfile::tempdir().expect("tmp");
    let src = source(&r, state.path());
    src.sync().expect("first sync");
    let packs = cache(state.path()).join("objects/pack");
    let mut truncated = 0;
    for e in std::fs::read_dir(&packs).expect("packs").flatten() {
        if e.path().extension().and_then(|x| x.to_str()) == Some("pack") {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(e.path())
                .expect("open pack");
            f.set_len(12).expect("truncate");
            truncated += 1;
        }
    }
    assert!(
        truncated > 0,
        "the first sync left no pack in {}",
        packs.display()
    );

    r.write("desired-state/app.txt", "v2\n");
    let c2 = r.commit_push("second");
    let s2 = src.sync().expect("sync heals the cache");
    assert_eq!(s2.commit, c2);
    let root = s2.desired_root;
    assert_eq!(
        std::fs::read_to_string(root.join("app.txt")).expect("read"),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("keep.txt")).expect("read"),
        "unchanged\n"
    );
    assert_eq!(moved_aside(state.path()), 1);
}

#[test]
fn unparsable_cache_config_is_moved_aside_and_refetched() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "v1\n");
    let c1 = r.commit_push("first");
    let state = tempfile::tempdir().expect("tmp");
    let src = source(&r, state.path());
    src.sync().expect("first sync");
    std::fs::write(cache(state.path()).join("config"), "[core\n\tbare = ???\n").expect("write");
    let s = src.sync().expect("sync heals the cache");
    assert_eq!(s.commit, c1);
    assert_eq!(moved_aside(state.path()), 1);
    // A sound cache is kept: the next sync moves nothing.
    src.sync().expect("third sync");
    assert_eq!(moved_aside(state.path()), 1);
}

#[test]
fn a_tampered_snapshot_is_rebuilt_before_use() {
    let r = Repos::new();
    r.write("desired-state/app.txt", "v1\n");
    let c1 = r.commit_push("first");
    let state = tempfile::tempdir().expect("tmp");
    let src = source(&r, state.path());
    let s1 = src.sync().expect("first sync");
    let file = s1.desired_root.join("app.txt");
    std::fs::write(&file, "edited by hand\n").expect("tamper");
    std::fs::write(s1.desired_root.join("extra.txt"), "x\n").expect("tamper");
    let s2 = src.sync().expect("second sync");
    assert_eq!(s2.commit, c1);
    assert_eq!(s2.snapshot_dir, s1.snapshot_dir);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "v1\n");
    assert!(!s2.desired_root.join("extra.txt").exists());
}
