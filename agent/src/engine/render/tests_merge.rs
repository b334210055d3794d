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
fn top_level_definitions_merge_key_by_key_across_include() {
    // compose-go's importResources: the including file's definition merged over the included
    // one, key by key, for networks, volumes, secrets and configs as for services.
    let d = desired(
        "include: [./lib/db.yaml]\nservices:\n  web: {image: busybox, networks: [back], secrets: [token]}\nnetworks:\n  back: {name: main_back, labels: {tier: main}}\nvolumes:\n  data: {labels: [owner=main]}\nsecrets:\n  token: {name: app_token}\n",
        &[
            (
                "lib/db.yaml",
                "services:\n  db: {image: busybox, networks: [back], volumes: [data:/data]}\nnetworks:\n  back:\n    name: included_back\n    internal: true\n    ipam: {config: [{subnet: 10.231.7.0/24}]}\n    labels: {tier: inc, team: db}\nvolumes:\n  data:\n    driver_opts: {type: tmpfs, device: tmpfs}\n    labels: {owner: inc, keep: 'yes'}\nsecrets:\n  token: {file: ./token.txt}\n",
            ),
            ("lib/token.txt", "s3cret"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(spec_of(&d, "db").networks.contains_key("main_back"));
    assert!(!d.networks.contains_key("included_back"));
    let back = &d.networks["main_back"];
    assert!(back.options.internal, "the included file's keys stay");
    assert_eq!(
        back.subnet.map(|s| s.to_string()).as_deref(),
        Some("10.231.7.0/24")
    );
    assert_eq!(back.labels["tier"], "main", "the including file wins");
    assert_eq!(back.labels["team"], "db");
    let data = &d.volumes["app_data"];
    assert_eq!(data.driver_opts["type"], "tmpfs");
    assert_eq!(data.labels["owner"], "main");
    assert_eq!(data.labels["keep"], "yes");
    assert_eq!(
        repo_sources(spec_of(&d, "web")),
        ["stacks/app/lib/token.txt"],
        "the included file's secret file keeps naming its own file"
    );
}

#[test]
fn override_files_merge_top_level_definitions_and_ipam_config_by_subnet() {
    let d = desired(
        "include:\n  - path: [./base.yaml, ./override.yaml]\nservices: {}\n",
        &[
            (
                "base.yaml",
                "services:\n  app: {image: busybox, networks: [net]}\nnetworks:\n  net:\n    driver_opts: {com.docker.network.bridge.name: br-base}\n    ipam:\n      config:\n        - {subnet: 10.231.8.0/24, gateway: 10.231.8.1}\n        - {subnet: 10.231.9.0/24}\n",
            ),
            (
                "override.yaml",
                "networks:\n  net:\n    labels: [env=prod]\n    ipam:\n      config:\n        - {subnet: 10.231.8.0/24, gateway: 10.231.8.254}\n        - {subnet: 10.231.10.0/24}\n",
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let net = &d.networks["app_net"];
    assert_eq!(
        net.options.driver_opts["com.docker.network.bridge.name"], "br-base",
        "the base file's keys stay"
    );
    assert_eq!(net.labels["env"], "prod");
    let pools: Vec<(Option<&str>, Option<&str>)> = net
        .options
        .ipam_config
        .iter()
        .map(|c| (c.subnet.as_deref(), c.gateway.as_deref()))
        .collect();
    assert_eq!(
        pools,
        [
            (Some("10.231.8.0/24"), Some("10.231.8.254")),
            (Some("10.231.9.0/24"), None),
            (Some("10.231.10.0/24"), None),
        ],
        "one pool per subnet, the override's gateway in the base's place"
    );
    assert_eq!(
        net.gateway.map(|g| g.to_string()).as_deref(),
        Some("10.231.8.254")
    );
}

#[test]
fn top_level_definitions_that_cannot_merge_name_file_path_and_line() {
    let e = desired(
        "include: [./lib/net.yaml]\nservices:\n  web: {image: busybox, networks: [back]}\nnetworks:\n  back:\n    ipam:\n      config: {subnet: 10.231.11.0/24}\n",
        &[(
            "lib/net.yaml",
            "networks:\n  back:\n    ipam: {config: [{subnet: 10.231.11.0/24}]}\n",
        )],
    )
    .expect_err("a mapping cannot merge over a list");
    assert!(
        e.contains("stacks/app/compose.yaml:7: networks.back.ipam.config: cannot merge a mapping over a list"),
        "{e}"
    );
    let e = desired(
        "include:\n  - path: [./base.yaml, ./override.yaml]\nservices: {}\n",
        &[
            (
                "base.yaml",
                "volumes:\n  data: {driver_opts: {type: tmpfs}}\n",
            ),
            (
                "override.yaml",
                "volumes:\n  data:\n    driver_opts: [type=nfs]\n",
            ),
        ],
    )
    .expect_err("a list cannot merge over a mapping");
    assert!(
        e.contains("stacks/app/override.yaml:3: volumes.data.driver_opts: cannot merge a list over a mapping"),
        "{e}"
    );
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
