//! The corpus: real compose files from public projects, taken unchanged
//! (`tests/fixtures/corpus/<name>/`, provenance in `corpus/SOURCES.md`), each validated by the
//! agent binary as the only stack of a throw-away desired state. `corpus/EXPECTED.yaml` records
//! each file's outcome, and this test holds the table to the truth in both directions:
//!
//! - `loads`: validate succeeds (warnings allowed).
//! - `{refused: [rule, ...], not_yet: [reason, ...]}`: validate fails; every error line matches
//!   one of the host-policy rules or not-yet-supported reasons, and every rule and reason still
//!   matches an error line. When a key gets supported, the test says which entry to change.
//!
//! A rule or reason is text that must occur in the error line (`file:line: path: message`);
//! a rule names the policy key that grants it (`policy.host_paths`, `policy.docker_socket`, ...).
//! Files are validated under a strict host policy (`policy: {}`), and the refused ones again under
//! a policy that grants everything: then no refusal may remain, and a file refused only by policy
//! must load — so "refused" really means "the host's agent config decides".
//! The test prints how many files load, and how many load or are refused only by host policy.
//! `CORPUS_FILE=<name>` checks one file; `CORPUS_PRINT=1` prints every file's error lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde::Deserialize;

use crate::support::BIN;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// `loads`, or a mapping naming why the file fails: host-policy rules (`refused`) and keys or
/// behaviours the agent does not support yet (`not_yet`).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Expected {
    Word(Loads),
    Fails(Fails),
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
enum Loads {
    Loads,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Fails {
    #[serde(default)]
    refused: Vec<String>,
    #[serde(default)]
    not_yet: Vec<String>,
}

#[test]
fn every_corpus_file_loads_or_fails_only_as_recorded() {
    let expected: BTreeMap<String, Expected> = serde_yaml::from_str(
        &std::fs::read_to_string(corpus_dir().join("EXPECTED.yaml")).expect("EXPECTED.yaml"),
    )
    .expect("EXPECTED.yaml: name: loads | {refused: [rule]} | {not_yet: [reason]}");
    let names = corpus_names();
    let mut problems: Vec<String> = names
        .iter()
        .filter(|n| !expected.contains_key(*n))
        .map(|n| format!("{n}: not in EXPECTED.yaml"))
        .chain(
            expected
                .keys()
                .filter(|n| !names.contains(n))
                .map(|n| format!("EXPECTED.yaml names {n}, which has no directory")),
        )
        .collect();
    let only = std::env::var("CORPUS_FILE").ok();
    let selected: Vec<&String> = names
        .iter()
        .filter(|n| only.as_deref().is_none_or(|o| o == n.as_str()))
        .filter(|n| expected.contains_key(*n))
        .collect();
    assert!(!selected.is_empty(), "no corpus file selected");

    let results = validate_all(&selected, STRICT);
    let refused: Vec<&String> = selected
        .iter()
        .copied()
        .filter(|n| matches!(&expected[*n], Expected::Fails(f) if !f.refused.is_empty()))
        .collect();
    let granted = validate_all(&refused, GRANT_ALL);
    let print = std::env::var_os("CORPUS_PRINT").is_some();
    let (mut loaded, mut policy_only) = (0, 0);
    for (name, errors) in &results {
        if print {
            eprintln!("{name}:\n  {}", errors.join("\n  "));
        }
        loaded += usize::from(errors.is_empty());
        if let Expected::Fails(f) = &expected[name] {
            policy_only += usize::from(f.not_yet.is_empty());
        }
        problems.extend(check(name, &expected[name], errors));
        if let (Some(after), Expected::Fails(f)) = (granted.get(name), &expected[name]) {
            problems.extend(check_granted(name, f, after));
        }
    }
    eprintln!(
        "corpus: {loaded}/{n} load; {}/{n} load or are refused only by a host-policy rule",
        loaded + policy_only,
        n = results.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn check(name: &str, expected: &Expected, errors: &[String]) -> Vec<String> {
    let fails = match expected {
        Expected::Word(Loads::Loads) if errors.is_empty() => return vec![],
        Expected::Word(Loads::Loads) => {
            return vec![format!(
                "{name}: expected to load, but:\n  {}",
                errors.join("\n  ")
            )]
        }
        Expected::Fails(f) => f,
    };
    if errors.is_empty() {
        return vec![format!(
            "{name}: now loads: set it to `loads` in EXPECTED.yaml (was {fails:?})"
        )];
    }
    let reasons: Vec<(&str, &String)> = fails
        .refused
        .iter()
        .map(|r| ("refused", r))
        .chain(fails.not_yet.iter().map(|r| ("not_yet", r)))
        .collect();
    let mut out = Vec::new();
    let unexplained: Vec<&str> = errors
        .iter()
        .filter(|e| !reasons.iter().any(|(_, r)| e.contains(r.as_str())))
        .map(String::as_str)
        .collect();
    if !unexplained.is_empty() {
        out.push(format!(
            "{name}: fails on something EXPECTED.yaml does not list ({fails:?}):\n  {}",
            unexplained.join("\n  ")
        ));
    }
    for (kind, r) in &reasons {
        if !errors.iter().any(|e| e.contains(r.as_str())) {
            out.push(format!(
                "{name}: {kind} {r:?} no longer occurs: remove it from EXPECTED.yaml"
            ));
        }
    }
    out
}

/// Under a policy granting everything, a refused file keeps only its not-yet errors.
fn check_granted(name: &str, fails: &Fails, errors: &[String]) -> Vec<String> {
    let still: Vec<&str> = errors
        .iter()
        .filter(|e| !fails.not_yet.iter().any(|r| e.contains(r.as_str())))
        .map(String::as_str)
        .collect();
    if still.is_empty() {
        return vec![];
    }
    vec![format!(
        "{name}: with every host-policy rule granted it still fails on more than its not_yet \
         reasons, so it is not refused only by policy:\n  {}",
        still.join("\n  ")
    )]
}

/// Directories holding a compose.yaml.
fn corpus_names() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("compose.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The agent config of a host that allows nothing beyond the defaults.
const STRICT: &str = "policy: {}\n";
/// One that grants every host-policy rule (`security_opt` is a list of entries allowed
/// verbatim: the corpus's only one beyond the harmless ones).
const GRANT_ALL: &str =
    "policy:\n  host_paths: [\"/:rw\"]\n  docker_socket: true\n  privileged: true\n  \
     network_host: true\n  pid_host: true\n  ipc_host: true\n  cap_add: [ALL]\n  \
     security_opt: [\"label=disable\"]\n";

/// `name → error lines` from `validate` under `policy`, a few files at a time.
fn validate_all(names: &[&String], policy: &str) -> BTreeMap<String, Vec<String>> {
    let queue = Mutex::new(names.to_vec());
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let Some(name) = queue.lock().expect("queue").pop() else {
                    return;
                };
                let errors = validate(name, policy);
                results
                    .lock()
                    .expect("results")
                    .insert(name.clone(), errors);
            });
        }
    });
    results.into_inner().expect("results")
}

/// The error lines of `validate` for a desired state whose only stack is the corpus file, on a
/// host whose agent config is `policy`. The environment is empty, so nothing on the test
/// machine (variables, /etc/macula-gitops) leaks in.
fn validate(name: &str, policy: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("agent.yaml");
    std::fs::write(&config, policy).expect("agent config");
    let root = tmp.path().join("desired-state");
    copy_dir(&corpus_dir().join(name), &root.join("stacks").join(name));
    std::fs::write(
        root.join("hosts.yaml"),
        format!("hosts:\n  default: {{stacks: [{name}]}}\n"),
    )
    .expect("hosts.yaml");
    let out = Command::new(BIN)
        .env_clear()
        .env("MACULA_GITOPS_LOG", "error")
        .env("MACULA_GITOPS_CONFIG", &config)
        .arg("--desired-state")
        .arg(&root)
        .args(["--host", "corpus"])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("validate")
        .output()
        .expect("agent binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(|l| l.replace(&format!("{}/", root.display()), ""))
        .collect();
    assert_eq!(
        out.status.success(),
        errors.is_empty(),
        "{name}: exit status {} disagrees with the error lines:\n{stderr}",
        out.status
    );
    errors
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src)
        .expect("read dir")
        .filter_map(|e| e.ok())
    {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}
