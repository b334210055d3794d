//! Parity with docker-compose: every case under `tests/fixtures/parity/<case>/` is brought up by
//! Debian's docker-compose 1.29 and by the agent on the real engine, one after the other, and
//! `docker inspect` of each pair of containers is compared field by field (see `inspect.rs`).
//!
//! A difference fails the test unless `tests/fixtures/parity/KNOWN.yaml` lists it with a
//! reason, and a listed difference that no longer shows up fails it too, so the list (and the
//! README section built from it) stays true. `PARITY_CASE=<case>` runs one case;
//! `PARITY_DUMP=1` prints both sides' normalised fields.
//!
//! Adding a case: a directory `<case>/compose.yaml` (placeholders `{image}` for the busybox test
//! image, `{id}`, `{net}` for a /24 prefix unique to the run, `{port}` for a free host port;
//! sibling files are copied as they are); every service needs a `command`, as the image has none.
mod inspect;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::support::docker::{docker, Cleanup};
use crate::support::fixture::{read, Fixture};
use crate::support::free_port;
use serde::Deserialize;
use serde_json::Value;

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Known {
    case: String,
    service: String,
    field: String,
    reason: String,
}

/// One field of one container pair that differs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Diff {
    case: String,
    service: String,
    field: String,
    compose: String,
    agent: String,
}

#[test]
fn containers_match_docker_compose_field_by_field() {
    let known: Vec<Known> = serde_yaml::from_str(
        &std::fs::read_to_string(parity_dir().join("KNOWN.yaml")).expect("KNOWN.yaml"),
    )
    .expect("KNOWN.yaml: a list of {case, service, field, reason}");
    for k in &known {
        assert!(
            !k.reason.trim().is_empty(),
            "KNOWN.yaml: {}/{} {} needs a reason",
            k.case,
            k.service,
            k.field
        );
    }
    let only = std::env::var("PARITY_CASE").ok();
    let all = cases();
    let cases: Vec<String> = all
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.as_str()))
        .cloned()
        .collect();
    assert!(!cases.is_empty(), "no parity case selected");
    for k in &known {
        assert!(
            all.contains(&k.case),
            "KNOWN.yaml names case {:?}, which has no directory",
            k.case
        );
    }

    let (diffs, failures) = run_all(&cases);

    let is_known = |d: &Diff| {
        known
            .iter()
            .any(|k| k.case == d.case && k.service == d.service && k.field == d.field)
    };
    let unlisted: Vec<&Diff> = diffs.iter().filter(|d| !is_known(d)).collect();
    let stale: Vec<&Known> = known
        .iter()
        .filter(|k| cases.contains(&k.case) && !failures.iter().any(|(c, _)| *c == k.case))
        .filter(|k| {
            !diffs
                .iter()
                .any(|d| k.case == d.case && k.service == d.service && k.field == d.field)
        })
        .collect();

    let mut report = String::new();
    for (case, err) in &failures {
        report.push_str(&format!("case {case}: {err}\n"));
    }
    if !unlisted.is_empty() {
        report.push_str("\ndifferences not in KNOWN.yaml:\n");
        report.push_str(&table(&unlisted));
    }
    for k in &stale {
        report.push_str(&format!(
            "\nKNOWN.yaml lists {}/{} {} ({}), but it no longer differs: remove the entry\n",
            k.case, k.service, k.field, k.reason
        ));
    }
    let known_rows: Vec<&Diff> = diffs.iter().filter(|d| is_known(d)).collect();
    eprintln!(
        "parity: {} case(s), {} known difference(s)\n{}",
        cases.len(),
        known_rows.len(),
        table(&known_rows)
    );
    assert!(report.is_empty(), "{report}");
}

/// Every directory under the parity fixtures holding a compose.yaml.
fn cases() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(parity_dir())
        .expect("parity fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("compose.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Runs cases on a few threads (each case is sequential inside: compose, then the agent, since
/// both create the same container names, subnets and host ports).
fn run_all(cases: &[String]) -> (Vec<Diff>, Vec<(String, String)>) {
    let queue = Mutex::new(cases.to_vec());
    let diffs = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let Some(case) = queue.lock().expect("queue").pop() else {
                    return;
                };
                match run_case(&case) {
                    Ok(d) => diffs.lock().expect("diffs").extend(d),
                    Err(e) => failures.lock().expect("failures").push((case, e)),
                }
            });
        }
    });
    let mut diffs = diffs.into_inner().expect("diffs");
    diffs.sort();
    let mut failures = failures.into_inner().expect("failures");
    failures.sort();
    (diffs, failures)
}

fn run_case(case: &str) -> Result<Vec<Diff>, String> {
    let f = Fixture::new();
    let src = parity_dir().join(case);
    let port = free_port().to_string();
    let fill = |text: &str| f.fill(text).replace("{port}", &port);

    let project = format!("t{}pc", f.id);
    let compose_dir = tempfile::tempdir().expect("tmp");
    copy_case(&src, compose_dir.path(), &fill);
    let compose = {
        // Removed (by compose's project label) before the agent creates the same names.
        let mut cleanup = Cleanup::default();
        cleanup.label("com.docker.compose.project", &project);
        let out = compose_cmd(&project, compose_dir.path())
            .args(["up", "-d"])
            .output()
            .expect("docker-compose runs");
        if !out.status.success() {
            return Err(format!(
                "docker-compose up failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let side = inspect::Side {
            project: &project,
            repo_dirs: vec![compose_dir.path()],
        };
        containers(
            &format!("label=com.docker.compose.project={project}"),
            "com.docker.compose.service",
            &side,
        )
    };

    let stack = format!("t{}pa", f.id);
    // The host grants what the cases ask for (docker-compose has no policy).
    f.agent_config("policy: {cap_add: [ALL]}\n");
    f.write(
        "hosts.yaml",
        &format!("hosts:\n  default: {{stacks: [{stack}]}}\n"),
    );
    copy_case(&src, &f.root().join("stacks").join(&stack), &fill);
    let out = f.run("a", &["apply"]);
    if !out.status.success() {
        return Err(format!(
            "agent apply failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let side = inspect::Side {
        project: &stack,
        repo_dirs: vec![f.state.path(), f.data.path()],
    };
    let agent = containers(
        &format!("label=io.macula.gitops.host={}", f.host("a")),
        "io.macula.gitops.service",
        &side,
    );
    if std::env::var_os("PARITY_DUMP").is_some() {
        eprintln!("{case}: docker-compose {compose:#?}\n{case}: agent {agent:#?}");
    }
    Ok(compare(case, &compose, &agent))
}

fn compose_cmd(project: &str, dir: &Path) -> Command {
    let mut c = Command::new("docker-compose");
    c.current_dir(dir)
        .args(["--no-ansi", "-p", project, "-f", "compose.yaml"]);
    c
}

/// The case directory with placeholders filled in compose.yaml (other files are copied as-is).
fn copy_case(src: &Path, dst: &Path, fill: &dyn Fn(&str) -> String) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src)
        .expect("case dir")
        .filter_map(|e| e.ok())
    {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_case(&e.path(), &to, &|t| t.to_string());
        } else if e.file_name() == "compose.yaml" {
            std::fs::write(&to, fill(&read(&e.path()))).expect("write");
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// `service[#n] → fields` of the containers matching `filter`.
fn containers(
    filter: &str,
    service_label: &str,
    side: &inspect::Side,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    let ids = docker(&["ps", "-aq", "--filter", filter]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut out = BTreeMap::new();
    if ids.is_empty() {
        return out;
    }
    let json = docker(&[&["inspect"], ids.as_slice()].concat());
    let mut list: Vec<Value> = serde_json::from_str(&json).expect("docker inspect is JSON");
    list.sort_by_key(|c| c["Name"].to_string());
    for c in &list {
        let service = c["Config"]["Labels"][service_label]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let mut key = service.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{service}#{n}");
        }
        out.insert(key, inspect::fields(c, side));
    }
    let ids: Vec<(String, String)> = list
        .iter()
        .map(|c| {
            let service = c["Config"]["Labels"][service_label].as_str().unwrap_or("?");
            (
                c["Id"].as_str().unwrap_or_default().to_string(),
                service.to_string(),
            )
        })
        .collect();
    for fields in out.values_mut() {
        for v in fields.values_mut() {
            *v = inspect::name_ids(std::mem::take(v), &ids);
        }
    }
    out
}

type Containers = BTreeMap<String, BTreeMap<String, Value>>;

fn compare(case: &str, compose: &Containers, agent: &Containers) -> Vec<Diff> {
    let mut out = Vec::new();
    let services: BTreeSet<&String> = compose.keys().chain(agent.keys()).collect();
    let empty = BTreeMap::new();
    for svc in services {
        let (c, a) = (compose.get(svc), agent.get(svc));
        if c.is_none() || a.is_none() {
            out.push(Diff {
                case: case.into(),
                service: svc.clone(),
                field: "container".into(),
                compose: if c.is_some() { "exists" } else { "—" }.into(),
                agent: if a.is_some() { "exists" } else { "—" }.into(),
            });
            continue;
        }
        let (c, a) = (c.unwrap_or(&empty), a.unwrap_or(&empty));
        let fields: BTreeSet<&String> = c.keys().chain(a.keys()).collect();
        for field in fields {
            if c.get(field) != a.get(field) {
                let show = |v: Option<&Value>| v.map_or("—".to_string(), |v| v.to_string());
                out.push(Diff {
                    case: case.into(),
                    service: svc.clone(),
                    field: field.clone(),
                    compose: show(c.get(field)),
                    agent: show(a.get(field)),
                });
            }
        }
    }
    out
}

fn table(rows: &[&Diff]) -> String {
    let mut s =
        String::from("| case/service | field | docker-compose | agent |\n|---|---|---|---|\n");
    for d in rows {
        s.push_str(&format!(
            "| {}/{} | {} | {} | {} |\n",
            d.case, d.service, d.field, d.compose, d.agent
        ));
    }
    s
}
