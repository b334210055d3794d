//! One service written in several places (`extends`, a main file over an included file,
//! `include` override files, `!reset`/`!override`): compose YAML in, the normalised spec out.

use super::tests::{desired, desired_at, spec_of};
use crate::desired::spec::MountSource;

fn repo_sources(s: &crate::desired::spec::ServiceSpec) -> Vec<String> {
    s.mounts
        .iter()
        .filter_map(|m| match &m.source {
            MountSource::Repo { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_main_file_adds_keys_to_a_service_its_included_file_defines() {
    // wger's layout: services/postgres.yaml defines db; compose.yaml adds shm_size and an
    // environment entry, and defines powersync's depends_on over services/powersync.yaml.
    let d = desired(
        "include:\n  - path: ./services/db.yaml\nservices:\n  db:\n    shm_size: 256mb\n    environment: [TZ=Europe/Berlin, B=main]\n  web:\n    image: busybox\n    depends_on: {db: {condition: service_started}}\n",
        &[
            (
                "services/db.yaml",
                "services:\n  db:\n    image: busybox\n    env_file: [../config/prod.env]\n    environment: [TZ=UTC, A=inc]\n    volumes: ['./init:/init:ro']\n    command: [postgres]\n",
            ),
            ("services/init/schema.sql", "create table t();"),
            ("config/prod.env", "P=1\n"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let db = spec_of(&d, "db");
    assert_eq!(db.image, "busybox");
    assert_eq!(db.command.as_deref(), Some(&["postgres".to_string()][..]));
    assert_eq!(db.environment["TZ"], "Europe/Berlin", "the main file wins");
    assert_eq!(db.environment["A"], "inc");
    assert_eq!(db.environment["B"], "main");
    assert_eq!(
        repo_sources(db),
        ["stacks/app/services/init"],
        "the included file's paths keep naming its own files"
    );
    assert!(
        db.env_files.keys().any(|k| k.ends_with("config/prod.env")),
        "{:?}",
        db.env_files
    );
    assert_eq!(
        d.services.iter().filter(|s| s.service == "db").count(),
        1,
        "one service, not two"
    );
}

#[test]
fn extends_in_the_same_file_and_from_another_file() {
    let d = desired(
        "services:\n  base:\n    image: busybox\n    environment: {A: '1'}\n    cap_add: [NET_ADMIN]\n  web:\n    extends: base\n    environment: {B: '2'}\n    command: [serve]\n  worker:\n    extends: {file: ../common/svc.yaml, service: common}\n    environment: {C: '3'}\n",
        &[
            (
                "../common/svc.yaml",
                "services:\n  common:\n    extends: root\n    volumes: ['./conf:/conf:ro']\n  root:\n    image: busybox:musl\n    labels: {tier: worker}\n",
            ),
            ("../common/conf/app.conf", "x"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = spec_of(&d, "web");
    assert_eq!(web.image, "busybox");
    assert_eq!(web.environment["A"], "1");
    assert_eq!(web.environment["B"], "2");
    assert!(web.cap_add.contains("NET_ADMIN"));
    let worker = spec_of(&d, "worker");
    assert_eq!(
        worker.image, "busybox:musl",
        "the base's own extends applied"
    );
    assert_eq!(
        worker.labels.get("tier").map(String::as_str),
        Some("worker")
    );
    assert_eq!(worker.environment["C"], "3");
    assert_eq!(
        repo_sources(worker),
        ["stacks/common/conf"],
        "paths of the extended file resolve in its directory"
    );
}

#[test]
fn extends_errors_name_the_place() {
    let e = desired(
        "services:\n  a: {extends: b, image: busybox}\n  b: {extends: a}\n",
        &[],
    )
    .expect_err("a cycle");
    assert!(
        e.contains("services.a.extends: extends cycle: a → b → a"),
        "{e}"
    );
    let e = desired("services:\n  a: {extends: nope, image: busybox}\n", &[]).expect_err("missing");
    assert!(
        e.contains("services.a.extends: service \"nope\" is not defined in this file"),
        "{e}"
    );
    let e = desired(
        "services:\n  a: {extends: {service: x, file: ../../../outside.yaml}, image: busybox}\n",
        &[],
    )
    .expect_err("outside the repo");
    assert!(e.contains("services.a.extends"), "{e}");
    assert!(e.contains("leaves the desired-state directory"), "{e}");
    let e = desired(
        "services:\n  base: {image: busybox, healthcheck: {retries: 1}}\n  a: {extends: base, healthcheck: [x]}\n",
        &[],
    )
    .expect_err("shape");
    assert!(e.contains("services.a.healthcheck"), "{e}");
}

#[test]
fn include_override_files_project_directory_and_env_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = desired_at(
        dir.path(),
        "include:\n  - path: [./third/compose.yaml, ./override.yaml]\n    project_directory: ./third\n    env_file: ./third.env\nservices: {}\n",
        &[
            (
                "third/compose.yaml",
                "services:\n  app:\n    image: busybox:${TAG}\n    ports: ['8080:80']\n    volumes: ['./data.txt:/data.txt:ro']\n",
            ),
            ("third/data.txt", "x"),
            ("override.yaml", "services:\n  app:\n    ports: !override ['9090:80']\n"),
            ("third.env", "TAG=1.36\n"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let app = spec_of(&d, "app");
    assert_eq!(app.image, "busybox:1.36", "the entry's env_file");
    assert_eq!(app.ports.len(), 1);
    assert_eq!(app.ports[0].host_port, Some(9090), "the override file wins");
    assert_eq!(repo_sources(app), ["stacks/app/third/data.txt"]);
}

#[test]
fn quoted_numbers_and_booleans_load_as_compose_casts_them() {
    let d = desired(
        "services:\n  web:\n    image: busybox\n    healthcheck: {test: [CMD, 'true'], retries: \"3\"}\n    cpu_shares: '512'\n    privileged: \"false\"\n    read_only: 'true'\n    pids_limit: \"100\"\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = spec_of(&d, "web");
    assert_eq!(web.healthcheck.as_ref().and_then(|h| h.retries), Some(3));
    let e = desired(
        "services:\n  web:\n    image: busybox\n    healthcheck: {retries: three}\n",
        &[],
    )
    .expect_err("not a number");
    assert!(
        e.contains("compose.yaml:4: services.web.healthcheck.retries: expected an integer, found \"three\""),
        "{e}"
    );
}

#[test]
fn the_including_file_keeps_its_network_definition() {
    let d = desired(
        "include: [./db.yaml]\nservices:\n  web: {image: busybox, networks: [back]}\nnetworks:\n  back: {name: main_back}\n",
        &[(
            "db.yaml",
            "services:\n  db: {image: busybox, networks: [back]}\nnetworks:\n  back: {name: included_back}\n",
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(spec_of(&d, "db").networks.contains_key("main_back"));
    assert!(d.networks.contains_key("main_back"));
    assert!(!d.networks.contains_key("included_back"));
}

#[test]
fn extends_a_service_an_included_file_defines() {
    let d = desired(
        "include: [./lib/base.yaml]\nservices:\n  web:\n    extends: base\n    command: [serve]\n",
        &[
            (
                "lib/base.yaml",
                "services:\n  base:\n    image: busybox\n    volumes: ['./etc:/etc/app:ro']\n",
            ),
            ("lib/etc/app.conf", "x"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = spec_of(&d, "web");
    assert_eq!(web.image, "busybox");
    assert_eq!(repo_sources(web), ["stacks/app/lib/etc"]);
    assert_eq!(repo_sources(spec_of(&d, "base")), ["stacks/app/lib/etc"]);
}
