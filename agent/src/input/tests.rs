//! Table tests of the reader: YAML in → value, lines and diagnostics out.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

use super::*;
use crate::diag::Severity;

fn parse_env(
    text: &str,
    env: &Env,
    limits: &Limits,
) -> (Option<(Value, SourceFile)>, Vec<Diagnostic>) {
    let mut d = Diagnostics::default();
    let out = parse_yaml(Path::new("f.yaml"), text, Some(env), limits, &mut d);
    (out, d.into_sorted())
}

fn parse(text: &str) -> (Option<(Value, SourceFile)>, Vec<Diagnostic>) {
    parse_env(text, &Env::default(), &Limits::default())
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn refused(text: &str, limits: &Limits) -> Diagnostic {
    let (out, d) = parse_env(text, &Env::default(), limits);
    assert!(out.is_none(), "{text:.60} should be refused");
    assert_eq!(d.len(), 1, "{d:?}");
    d[0].clone()
}

#[test]
fn merge_keys_take_values_and_lines_from_the_anchor() {
    let text = "\
x-base: &base
  image: busybox
  restart: always
x-env: &env
  environment: {A: '1'}
  restart: unless-stopped
services:
  web:
    <<: [*base, *env]
    restart: 'no'
  db:
    image: postgres
    <<: *base
";
    let (out, d) = parse(text);
    assert!(d.is_empty(), "{d:?}");
    let (v, src) = out.expect("parses");
    let web = get(&v, "services.web");
    assert_eq!(web["image"], Value::from("busybox"));
    assert_eq!(web["restart"], Value::from("no"), "explicit keys win");
    assert_eq!(web["environment"]["A"], Value::from("1"));
    assert!(web.get("<<").is_none());
    assert_eq!(get(&v, "services.db.image"), &Value::from("postgres"));
    assert_eq!(get(&v, "services.db.restart"), &Value::from("always"));
    let line = |p| src.lines.line_of(p);
    assert_eq!(
        line("services.web.image"),
        Some(2),
        "merged: the anchor's line"
    );
    assert_eq!(line("services.web.environment.A"), Some(5));
    assert_eq!(line("services.web.restart"), Some(10));
    assert_eq!(line("services.db.image"), Some(12));
    assert_eq!(line("services.db.restart"), Some(3));
    // The earlier source of a list wins over a later one.
    let (out, _) = parse("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc: {<<: [*a, *b]}\n");
    let v = out.expect("parses").0;
    assert_eq!(
        (v["c"]["k"].as_u64(), v["c"]["j"].as_u64()),
        (Some(1), Some(3))
    );
}

#[test]
fn aliases_keep_the_alias_line_and_the_anchor_lines_inside() {
    let text = "x-env: &env\n  A: 1\n  B: 2\nservices:\n  s:\n    environment: *env\n";
    let (out, _) = parse(text);
    let (v, src) = out.expect("parses");
    assert_eq!(get(&v, "services.s.environment.B").as_u64(), Some(2));
    assert_eq!(src.lines.line_of("services.s.environment"), Some(6));
    assert_eq!(src.lines.line_of("services.s.environment.B"), Some(3));
}

#[test]
fn bom_and_crlf_are_one_document() {
    let text = "\u{feff}services:\r\n  a:\r\n    image: x\r\n";
    let (out, d) = parse(text);
    assert!(d.is_empty(), "{d:?}");
    let (v, src) = out.expect("parses");
    assert_eq!(get(&v, "services.a.image"), &Value::from("x"));
    assert_eq!(src.lines.line_of("services.a.image"), Some(3));
}

/// getsentry/self-hosted writes this; PyYAML (docker-compose) and libyaml accept a flow
/// sequence whose items and closing `]` are indented no deeper than its key, as the reader must.
#[test]
fn a_flow_sequence_closed_at_its_key_column_loads_as_compose_reads_it() {
    let text = "\
services:
  web:
    healthcheck:
      test: [
          \"CMD-SHELL\",
          # comment
          \"http_proxy='' wget ...\",
      ]
      interval: 30s
";
    let (out, d) = parse(text);
    assert!(d.is_empty(), "{d:?}");
    let (v, src) = out.expect("parses");
    let check = get(&v, "services.web.healthcheck");
    assert_eq!(
        check["test"],
        Value::from(vec!["CMD-SHELL", "http_proxy='' wget ..."])
    );
    assert_eq!(check["interval"], Value::from("30s"));
    assert_eq!(src.lines.line_of("services.web.healthcheck.test"), Some(4));
    assert_eq!(
        src.lines.line_of("services.web.healthcheck.test[1]"),
        Some(7)
    );
    assert_eq!(
        src.lines.line_of("services.web.healthcheck.interval"),
        Some(9)
    );
}

#[test]
fn shape_errors_name_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("a: 1\n---\nb: 2\n", 2, "a second YAML document"),
        ("a: [1\nb: 2\n", 2, "YAML syntax"),
        ("a: !custom x\n", 1, "tag !custom"),
        ("a: *nope\n", 1, "YAML syntax"),
    ];
    for (text, line, want) in cases {
        let d = refused(text, &Limits::default());
        assert_eq!(
            (d.file.as_path(), d.line),
            (Path::new("f.yaml"), Some(*line)),
            "{text:?}: {d}"
        );
        assert!(d.message.contains(want), "{text:?}: {d}");
    }
    let (_, d) = parse("a: 1\nb: 2\na: 3\n");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].path.as_str()), (Some(3), "a"));
    assert!(
        d[0].message
            .contains("duplicate key \"a\" (first at line 1)"),
        "{}",
        d[0]
    );
}

/// The classic "billion laughs": ten levels of ten aliases each.
fn alias_bomb(levels: usize) -> String {
    let mut t = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        t.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    t
}

#[test]
fn an_alias_bomb_is_refused_by_the_limit_quickly() {
    let started = Instant::now();
    let d = refused(&alias_bomb(10), &Limits::default());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        d.message
            .contains("aliases expand to more than the limit of 100000 nodes"),
        "{d}"
    );
    assert!(
        d.message.contains("MACULA_GITOPS_YAML_MAX_ALIAS_NODES"),
        "{d}"
    );
    // A few levels are fine.
    let (out, d) = parse(&alias_bomb(3));
    assert!(d.is_empty() && out.is_some(), "{d:?}");
}

#[test]
fn nesting_and_node_limits() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let d = refused(&deep, &Limits::default());
    assert!(
        d.message
            .contains("nested deeper than the limit of 64 levels"),
        "{d}"
    );
    let block: String = (0..70).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
    let d = refused(&block, &Limits::default());
    assert_eq!(d.line, Some(65), "{d}");
    let small = Limits {
        max_nodes: 10,
        ..Limits::default()
    };
    let d = refused("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]", &small);
    assert!(
        d.message.contains("more than the limit of 10 YAML nodes"),
        "{d}"
    );
}

#[test]
fn size_is_checked_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let body = |n: usize| format!("a: {}\n", "x".repeat(n - 4));
    std::fs::write(dir.path().join("ok.yaml"), body(1000)).unwrap();
    std::fs::write(dir.path().join("big.yaml"), body(1001)).unwrap();
    let mut d = Diagnostics::default();
    assert!(read_with(dir.path(), Path::new("ok.yaml"), None, &limits, &mut d).is_some());
    assert!(read_with(dir.path(), Path::new("big.yaml"), None, &limits, &mut d).is_none());
    let d = d.into_sorted();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].file, Path::new("big.yaml"));
    assert_eq!(
        d[0].message,
        "file is 1001 bytes, over the limit of 1000 bytes (MACULA_GITOPS_YAML_MAX_BYTES)"
    );
    assert_eq!(Limits::default().max_bytes, 10 * 1024 * 1024);
    let from_env = Limits::from_vars(|k| (k == "MACULA_GITOPS_YAML_MAX_DEPTH").then(|| "7".into()));
    assert_eq!(
        (from_env.max_depth, from_env.max_nodes),
        (7, Limits::default().max_nodes)
    );
}

#[test]
fn interpolated_plain_scalars_are_typed_as_compose_types_them() {
    let env = Env::from_pairs([("N", "3"), ("RO", "true"), ("P", "0123"), ("F", "1.5")]);
    let text = "retries: ${N}\nread_only: ${RO}\nquoted: '${N}'\npassword: ${P}\ncpus: ${F}\nimage: app:${N}\nempty: ${UNSET:-}\n";
    let (out, d) = parse_env(text, &env, &Limits::default());
    assert!(d.is_empty(), "{d:?}");
    let v = out.expect("parses").0;
    assert_eq!(v["retries"], Value::from(3u64));
    assert_eq!(v["read_only"], Value::Bool(true));
    assert_eq!(v["quoted"], Value::from("3"));
    assert_eq!(
        v["password"],
        Value::from("0123"),
        "leading zeros stay text"
    );
    assert_eq!(v["cpus"], Value::from(1.5));
    assert_eq!(v["image"], Value::from("app:3"));
    assert_eq!(v["empty"], Value::from(""), "empty, not null");
    // Without an environment (the agent config) `$` is text.
    let mut d = Diagnostics::default();
    let (v, _) = parse_yaml(
        Path::new("c"),
        "a: ${N}\n",
        None,
        &Limits::default(),
        &mut d,
    )
    .unwrap();
    assert_eq!(v["a"], Value::from("${N}"));
}

#[test]
fn unset_variables_warn_and_required_ones_fail() {
    let text = "services:\n  a:\n    image: app:${TAG}\n    environment:\n      - PW=${PW:?set the password}\n";
    let (out, d) = parse(text);
    assert!(out.is_some());
    assert_eq!(d.len(), 2, "{d:?}");
    let w = d
        .iter()
        .find(|d| d.severity == Severity::Warning)
        .expect("a warning");
    assert_eq!((w.line, w.path.as_str()), (Some(3), "services.a.image"));
    assert!(
        w.message
            .starts_with("variable TAG is not set; an empty string is used"),
        "{w}"
    );
    let e = d.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(
        (e.line, e.path.as_str()),
        (Some(5), "services.a.environment[0]")
    );
    assert_eq!(e.message, "variable PW is not set: set the password");
    assert_eq!(
        out.unwrap().0["services"]["a"]["image"],
        Value::from("app:")
    );
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Svc {
    image: String,
    retries: Option<u32>,
    read_only: Option<bool>,
    ports: Option<Vec<u16>>,
}

const SVC_KEYS: &[&str] = &["image", "retries", "read_only", "ports"];

/// `text` as service `a` (its lines start at 3).
fn typed(text: &str) -> (Option<Svc>, Vec<String>) {
    let body: String = text.lines().map(|l| format!("    {l}\n")).collect();
    let (out, d) = parse(&format!("services:\n  a:\n{body}"));
    assert!(d.is_empty(), "{d:?}");
    let (v, src) = out.expect("parses");
    let v = v["services"]["a"].clone();
    let mut d = Diagnostics::default();
    let s = deserialize_at::<Svc>(v, "services.a", &src, &|_| SVC_KEYS, &mut d);
    (s, d.into_sorted().iter().map(ToString::to_string).collect())
}

#[test]
fn every_type_error_of_a_value_at_once() {
    let (s, d) = typed("image: [x]\nretries: many\nread_only: 3\nports: [80, x, 81, y]\n");
    assert!(s.is_none());
    assert_eq!(
        d,
        [
            "f.yaml:3: services.a.image: invalid type: sequence, expected a string",
            "f.yaml:4: services.a.retries: invalid type: string \"many\", expected u32",
            "f.yaml:5: services.a.read_only: invalid type: integer `3`, expected a boolean",
            "f.yaml:6: services.a.ports[1]: invalid type: string \"x\", expected u16",
            "f.yaml:6: services.a.ports[3]: invalid type: string \"y\", expected u16",
        ],
        "no follow-on `missing field image`, item indices as in the file"
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_supported_key() {
    let (s, d) = typed("imgae: x\nimage: y\nx-note: kept\nwhatever: 1\n");
    assert!(s.is_some(), "unknown keys are reported, the value is read");
    assert!(
        d.contains(&"f.yaml:3: services.a.imgae: unknown key \"imgae\"; did you mean \"image\"? (supported: image, retries, read_only, ports)".to_string()),
        "{d:?}"
    );
    assert_eq!(
        deserialize::nearest("readonly", SVC_KEYS),
        Some("read_only")
    );
    assert_eq!(deserialize::nearest("whatever", SVC_KEYS), None);
    assert_eq!(
        deserialize::unknown_key_message("image", &["image", "imag"]),
        "unknown key \"image\"; did you mean \"imag\"? (supported: image, imag)",
        "a suggestion is never the unknown key itself"
    );
}

#[test]
fn merge_tags_are_read_and_refused_where_nothing_merges() {
    let (out, d) = parse("a: !reset [x]\nb: !override {c: 1}\nd: !reset\n");
    assert!(d.is_empty(), "{d:?}");
    let (v, _) = out.expect("parses");
    assert!(matches!(&v["a"], Value::Tagged(t) if t.tag == "reset"));
    assert!(matches!(&v["b"], Value::Tagged(t) if t.tag == "override"));
    let (_, d) = parse("a: !custom x\n");
    assert!(
        d[0].to_string().contains("tag !custom is not supported"),
        "{d:?}"
    );

    let (s, d) = typed("image: !override y\nretries: 3\n");
    assert_eq!(s.expect("read as if untagged").image, "y");
    assert_eq!(
        d,
        ["f.yaml:3: services.a.image: tag !override only means something in a compose file, where definitions are merged"]
    );
}
