//! Compose's merge rules, case by case as compose-go's `override/merge_*_test.go` state them.

use std::path::Path;

use serde_yaml::Value;

use super::{merge_entry, rebase_service, strip, MergeError};
use crate::input::{parse_yaml, Limits};

fn yaml(text: &str) -> Value {
    let mut d = crate::diag::Diagnostics::default();
    let (v, _) = parse_yaml(Path::new("t.yaml"), text, None, &Limits::default(), &mut d)
        .unwrap_or_else(|| panic!("parses: {d:?}"));
    assert!(d.is_empty(), "{d:?}");
    v
}

fn merged(base: &str, over: &str) -> Value {
    merge_entry("services", yaml(base), yaml(over)).expect("merges")
}

#[test]
fn mappings_merge_sequences_append_scalars_replace() {
    let m = merged(
        "image: a\ncap_add: [NET_ADMIN]\nhealthcheck: {interval: 5s, retries: 3}\nshm_size: 1m\n",
        "image: b\ncap_add: [SYS_TIME]\nhealthcheck: {retries: 5}\n",
    );
    assert_eq!(
        m,
        yaml("image: b\ncap_add: [NET_ADMIN, SYS_TIME]\nhealthcheck: {interval: 5s, retries: 5}\nshm_size: 1m\n")
    );
}

#[test]
fn command_entrypoint_and_healthcheck_test_are_replaced_whole() {
    let m = merged(
        "command: [a, b]\nentrypoint: x\nhealthcheck: {test: [CMD, a]}\n",
        "command: [c]\nentrypoint: [y]\nhealthcheck: {test: [CMD, b]}\n",
    );
    assert_eq!(
        m,
        yaml("command: [c]\nentrypoint: [y]\nhealthcheck: {test: [CMD, b]}\n")
    );
}

#[test]
fn key_value_lists_merge_by_key_keeping_the_first_place() {
    let m = merged(
        "environment: {B: '1', A: '2'}\nlabels: [x=1]\n",
        "environment: [A=3, C]\nlabels: {x: '2', y: '3'}\n",
    );
    assert_eq!(
        m,
        yaml("environment: [A=3, B=1, C]\nlabels: [x=2, y=3]\n"),
        "maps become sorted KEY=value lists, then one entry per key"
    );
}

#[test]
fn ports_volumes_and_expose_keep_one_entry_per_key() {
    let m = merged(
        "ports: ['80:80', {target: 443, published: '8443'}]\nvolumes: [./a:/data, v:/cache]\nexpose: [1]\n",
        "ports: ['80:80', '81:81']\nvolumes: [./b:/data:ro]\nexpose: ['1', 2]\n",
    );
    assert_eq!(
        m,
        yaml("ports: ['80:80', {target: 443, published: '8443'}, '81:81']\nvolumes: [./b:/data:ro, v:/cache]\nexpose: ['1', 2]\n")
    );
}

#[test]
fn depends_on_networks_build_and_logging() {
    let m = merged(
        "depends_on: [db]\nnetworks: [front]\nbuild: ./app\nlogging: {driver: json-file, options: {max-size: 1m}}\n",
        "depends_on: {cache: {condition: service_healthy}}\nnetworks: {back: {aliases: [b]}}\nbuild: {target: prod}\nlogging: {options: {max-file: '3'}}\n",
    );
    assert_eq!(
        m,
        yaml("depends_on: {db: {condition: service_started, required: true}, cache: {condition: service_healthy}}\nnetworks: {front: null, back: {aliases: [b]}}\nbuild: {context: ./app, target: prod}\nlogging: {driver: json-file, options: {max-size: 1m, max-file: '3'}}\n")
    );
    let m = merged(
        "logging: {driver: json-file, options: {max-size: 1m}}\n",
        "logging: {driver: syslog}\n",
    );
    assert_eq!(
        m,
        yaml("logging: {driver: syslog}\n"),
        "another driver drops the options"
    );
}

#[test]
fn extra_hosts_keep_the_base_order_and_add_new_entries() {
    let m = merged(
        "extra_hosts: ['a:1.1.1.1', 'b:2.2.2.2']\n",
        "extra_hosts: ['b:2.2.2.2', 'c:3.3.3.3']\n",
    );
    assert_eq!(
        m,
        yaml("extra_hosts: ['a:1.1.1.1', 'b:2.2.2.2', 'c:3.3.3.3']\n")
    );
}

#[test]
fn reset_and_override_tags() {
    let m = merged(
        "image: a\nports: ['80:80']\nvolumes: [./a:/a]\nenvironment: {A: '1'}\n",
        "ports: !reset []\nvolumes: !override [./b:/b]\nenvironment: {B: !reset null}\n",
    );
    assert_eq!(m, yaml("image: a\nvolumes: [./b:/b]\nenvironment: [A=1]\n"));
    assert_eq!(
        strip(yaml("a: !reset x\nb: !override [1]\nc: {d: !reset}\n")),
        Some(yaml("b: [1]\nc: {}\n")),
        "alone, a reset key goes and an override value stays"
    );
}

#[test]
fn a_list_over_a_mapping_is_an_error_naming_the_key() {
    let e = merge_entry(
        "services",
        yaml("healthcheck: {retries: 1}\n"),
        yaml("healthcheck: [x]\n"),
    )
    .expect_err("refused");
    assert!(matches!(e, MergeError::Shape { .. }));
    assert_eq!(e.path(), "services.*.healthcheck");
}

#[test]
fn rebased_paths_name_the_same_files() {
    let mut v = yaml(
        "build: ./ctx\nenv_file: [../config/prod.env, {path: ./x.env, required: false}]\nvolumes: ['./conf:/conf:ro', 'named:/data', {type: bind, source: ./d, target: /d}, /abs:/abs]\n",
    );
    rebase_service(
        &mut v,
        Path::new("/r/stacks/app/services"),
        Path::new("/r/stacks/app"),
    );
    assert_eq!(
        v,
        yaml("build: ./services/ctx\nenv_file: [./config/prod.env, {path: ./services/x.env, required: false}]\nvolumes: ['./services/conf:/conf:ro', 'named:/data', {type: bind, source: ./services/d, target: /d}, /abs:/abs]\n")
    );
    let mut v = yaml("volumes: ['./conf:/conf']\n");
    rebase_service(
        &mut v,
        Path::new("/r/stacks/common"),
        Path::new("/r/stacks/app"),
    );
    assert_eq!(v, yaml("volumes: ['../common/conf:/conf']\n"));
}
