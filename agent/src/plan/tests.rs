//! Table tests: a desired state (Compose YAML written to a temp dir) and an observed state
//! (YAML) in, steps out.

use std::collections::BTreeMap;

use super::*;
use crate::desired::{interpolate::Env, load_desired};

const HOST: &str = "h1";

fn desired(stacks: &[(&str, &str)]) -> DesiredState {
    let names: Vec<&str> = stacks.iter().map(|(n, _)| *n).collect();
    desired_ordered("", stacks, &names)
}

/// `order`: the `stacks:` section of `hosts.yaml` (stack ordering), or ""; the host runs
/// `names` of `stacks`.
fn desired_ordered(order: &str, stacks: &[(&str, &str)], names: &[&str]) -> DesiredState {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts.yaml"),
        format!(
            "{order}hosts:\n  default: {{stacks: [{}]}}\n",
            names.join(", ")
        ),
    )
    .unwrap();
    for (name, compose) in stacks {
        let d = dir.path().join("stacks").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("compose.yaml"), compose).unwrap();
        std::fs::write(d.join("app.conf"), "v1").unwrap();
    }
    let state = load_desired(dir.path(), HOST, &Env::default()).unwrap_or_else(|e| panic!("{e:?}"));
    // Keep the tempdir alive for the test's duration: the state only holds paths into it.
    std::mem::forget(dir);
    state
}

fn converged(d: &DesiredState) -> Observed {
    Observed::as_applied(d)
}

const WEB: &str = "
services:
  db:
    image: busybox:1
    container_name: t-db
    volumes: [data:/data]
    networks: {infra: {ipv4_address: 10.99.0.10}}
    healthcheck: {test: [CMD, true], interval: 1s}
  web:
    image: busybox:1
    container_name: t-web
    environment: {MODE: prod}
    volumes: [./app.conf:/etc/app.conf:ro]
    ports: [\"127.0.0.1:8080:80\"]
    networks: [infra]
    depends_on: {db: {condition: service_healthy}}
networks:
  infra:
    ipam: {config: [{subnet: 10.99.0.0/24}]}
volumes:
  data: {}
";

fn opts() -> PlanOptions {
    PlanOptions {
        prune: true,
        ..Default::default()
    }
}

fn lines(p: &Plan) -> Vec<String> {
    p.steps.iter().map(ToString::to_string).collect()
}

#[test]
fn cold_start_creates_everything_in_dependency_order() {
    let d = desired(&[("web", WEB)]);
    let p = plan(&d, &Observed::default(), &opts());
    assert_eq!(
        lines(&p),
        [
            "+ network web_infra",
            "+ volume web_data",
            "+ image busybox:1 (pull)",
            "+ container t-db (web/db)",
            "+ container t-web (web/web)",
        ]
    );
}

#[test]
fn converged_gives_an_empty_plan() {
    let d = desired(&[("web", WEB)]);
    let p = plan(&d, &converged(&d), &opts());
    assert!(p.is_empty(), "{p}");
}

#[test]
fn the_revision_label_alone_never_recreates() {
    // A rollback's pinned containers carry the last good revision, the others the new one:
    // the plan compares specs, not which commit made the container.
    let d = desired(&[("web", WEB)]);
    let mut o = converged(&d);
    o.containers[0]
        .labels
        .insert(labels::REVISION.into(), "good".into());
    o.containers[1]
        .labels
        .insert(labels::REVISION.into(), "bad".into());
    let p = plan(&d, &o, &opts());
    assert!(p.is_empty(), "{p}");
}

#[test]
fn changed_env_recreates_only_that_service_and_names_the_field() {
    let d = desired(&[("web", WEB)]);
    let o = converged(&d);
    let d2 = desired(&[("web", &WEB.replace("MODE: prod", "MODE: dev"))]);
    let p = plan(&d2, &o, &opts());
    assert_eq!(
        lines(&p),
        ["~ container t-web (web/web): recreate, environment changed"]
    );
}

#[test]
fn changed_bind_mounted_file_recreates_and_names_the_file() {
    let d = desired(&[("web", WEB)]);
    let o = converged(&d);
    let d2 = desired(&[("web", WEB)]);
    let conf = d2.root.join("stacks/web/app.conf");
    std::fs::write(&conf, "v2").unwrap();
    let d2 = load_desired(&d2.root, HOST, &Env::default()).unwrap();
    let p = plan(&d2, &o, &opts());
    assert_eq!(
        lines(&p),
        ["~ container t-web (web/web): recreate, file stacks/web/app.conf changed"]
    );
}

#[test]
fn stopped_and_unhealthy_containers_are_repaired() {
    let d = desired(&[("web", WEB)]);
    let mut o = converged(&d);
    o.containers[0].state = "exited".into();
    o.containers[0].exit_code = Some(137);
    o.containers[1].health = Some("unhealthy".into());
    assert_eq!(
        lines(&plan(&d, &o, &opts())),
        [
            "~ container t-db (web/db): start, not running",
            "~ container t-web (web/web): restart, unhealthy"
        ]
    );
    // While web's rollout is watched, its verdict decides: only db is repaired, and a web
    // container that is gone is still created.
    let watching = PlanOptions {
        watched: ["web/web".to_string()].into(),
        ..opts()
    };
    assert_eq!(
        lines(&plan(&d, &o, &watching)),
        ["~ container t-db (web/db): start, not running"]
    );
    o.containers.remove(1);
    assert_eq!(
        lines(&plan(&d, &o, &watching)),
        [
            "~ container t-db (web/db): start, not running",
            "+ container t-web (web/web)"
        ]
    );
}

#[test]
fn removed_service_is_pruned_but_its_volume_is_kept() {
    let d = desired(&[("web", WEB)]);
    let o = converged(&d);
    let without_db = "
services:
  web:
    image: busybox:1
    container_name: t-web
networks:
  infra:
    ipam: {config: [{subnet: 10.99.0.0/24}]}
";
    let d2 = desired(&[("web", without_db)]);
    let l = lines(&plan(&d2, &o, &opts()));
    assert!(
        l.contains(&"- container t-db (web/db): no longer desired".to_string()),
        "{l:?}"
    );
    assert!(
        !l.iter().any(|s| s.contains("volume")),
        "volumes are never pruned by default: {l:?}"
    );
    let with_volumes = PlanOptions {
        prune: true,
        prune_volumes: true,
        allow_empty: false,
        ..Default::default()
    };
    assert!(lines(&plan(&d2, &o, &with_volumes)).contains(&"- volume web_data".to_string()));
}

#[test]
fn foreign_and_other_host_containers_are_never_touched() {
    let d = desired(&[("web", WEB)]);
    let mut o = converged(&d);
    // A container of another host on the same engine, and one nobody manages.
    let mut other = o.containers[0].clone();
    other.id = "other".into();
    other.name = "x-other".into();
    other.labels.insert(labels::HOST.into(), "h2".into());
    o.containers.push(other);
    o.containers.push(ObservedContainer {
        id: "mine".into(),
        name: "hand-made".into(),
        state: "running".into(),
        ..Default::default()
    });
    assert!(plan(&d, &o, &opts()).is_empty());
}

#[test]
fn name_taken_by_unmanaged_container_is_blocked_not_removed() {
    let d = desired(&[("web", WEB)]);
    let mut o = converged(&d);
    o.containers[1].labels = BTreeMap::new();
    let l = lines(&plan(&d, &o, &opts()));
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with(
            "! container t-web: the name is taken by a container this agent does not own"
        ),
        "{l:?}"
    );
}

#[test]
fn empty_desired_state_refuses_to_prune_everything() {
    let d = desired(&[("web", WEB)]);
    let o = converged(&d);
    let empty = desired(&[("web", "services: {}\n")]);
    let l = lines(&plan(&empty, &o, &opts()));
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].contains("refusing to remove all 2 managed containers"),
        "{l:?}"
    );
    let allow = PlanOptions {
        prune: true,
        prune_volumes: false,
        allow_empty: true,
        ..Default::default()
    };
    assert_eq!(plan(&empty, &o, &allow).changes(), 3); // two containers and the network
}

#[test]
fn observed_state_reads_from_yaml() {
    let o: Observed = serde_yaml::from_str(
        "containers:\n  - {id: a, name: n, state: exited, exit_code: 0}\nnetworks:\n  net: {subnet: 10.0.0.0/24}\n",
    )
    .unwrap();
    assert_eq!(o.containers[0].exit_code, Some(0));
    assert!(o.networks["net"].subnet.is_some());
}

#[test]
fn networks_and_volumes_without_compose_labels_are_kept_as_they_are() {
    // Made by an agent that did not write compose's labels yet, or by docker-compose itself:
    // Docker cannot relabel either, and recreating would cut off the attached containers or
    // lose the volume's data, so the labels only come with a newly created object.
    let d = desired(&[("web", WEB)]);
    let mut o = converged(&d);
    for n in o.networks.values_mut() {
        n.labels = BTreeMap::from([(labels::COMPOSE_PROJECT.into(), "web".into())]);
    }
    for v in o.volumes.values_mut() {
        v.labels.clear();
    }
    assert!(plan(&d, &o, &opts()).is_empty());
    // Not ours, so never pruned, even with --prune-volumes.
    let every = PlanOptions {
        prune: true,
        prune_volumes: true,
        allow_empty: false,
        ..Default::default()
    };
    let d2 = desired(&[("web", "services:\n  other: {image: busybox:1}\n")]);
    let l = lines(&plan(&d2, &o, &every));
    assert!(
        !l.iter()
            .any(|s| s.contains("- network web_infra") || s.contains("- volume web_data")),
        "{l:?}"
    );
}

#[test]
fn a_stack_docker_compose_runs_is_adopted_not_duplicated() {
    let d = desired(&[("web", WEB)]);
    // What `docker-compose -p web up -d` left on the engine (v1 names for db, v2 for web, two
    // stopped db containers after a `--scale`), plus a one-off `run` container and another
    // project's container that must be left alone.
    let o: Observed = serde_yaml::from_str(
        r#"
networks:
  web_infra: {subnet: 10.99.0.0/24, labels: {com.docker.compose.project: web, com.docker.compose.network: infra}}
volumes:
  web_data: {labels: {com.docker.compose.project: web, com.docker.compose.volume: data}}
images:
  busybox:1: {}
containers:
  - {id: c1, name: web_db_2, state: exited, exit_code: 0,
     labels: {com.docker.compose.project: web, com.docker.compose.service: db, com.docker.compose.oneoff: "False"}}
  - {id: c2, name: web_db_1, state: running,
     labels: {com.docker.compose.project: web, com.docker.compose.service: db, com.docker.compose.oneoff: "False"},
     mounts: [{volume: web_data, target: /data}]}
  - {id: c3, name: web-web-1, state: running,
     labels: {com.docker.compose.project: web, com.docker.compose.service: web, com.docker.compose.oneoff: "False"}}
  - {id: c4, name: web_db_run_1, state: running,
     labels: {com.docker.compose.project: web, com.docker.compose.service: db, com.docker.compose.oneoff: "True"}}
  - {id: c5, name: other_db_1, state: running,
     labels: {com.docker.compose.project: other, com.docker.compose.service: db, com.docker.compose.oneoff: "False"}}
"#,
    )
    .unwrap();
    let p = plan(&d, &o, &opts());
    assert_eq!(
        lines(&p),
        [
            "~ adopt web_db_1 (web/db): run by docker compose; replaced by t-db with its volumes (2 compose containers)",
            "~ adopt web-web-1 (web/web): run by docker compose; replaced by t-web with its volumes",
        ]
    );
    // The running container first: its volumes are the ones carried over.
    assert!(matches!(&p.steps[0], Step::AdoptContainer { ids, .. } if ids == &["c2", "c1"]));
    // Once the agent's containers run, the same engine is converged.
    assert!(plan(&d, &converged(&d), &opts()).is_empty());
}

const SCALED: &str = "
services:
  api:
    image: busybox:1
    deploy: {replicas: 3}
    ports: [\"127.0.0.1:8000-8009:80\"]
";

#[test]
fn scaling_up_adds_numbered_containers_and_keeps_the_first() {
    let one = desired(&[("s", &SCALED.replace("replicas: 3", "replicas: 1"))]);
    let three = desired(&[("s", SCALED)]);
    assert_eq!(
        lines(&plan(&three, &converged(&one), &opts())),
        ["+ container s-api-2 (s/api)", "+ container s-api-3 (s/api)",]
    );
    assert!(plan(&three, &converged(&three), &opts()).is_empty());
    // Cold: every replica, one pull.
    assert_eq!(
        lines(&plan(&three, &Observed::default(), &opts())),
        [
            "+ network s_default",
            "+ image busybox:1 (pull)",
            "+ container s-api-1 (s/api)",
            "+ container s-api-2 (s/api)",
            "+ container s-api-3 (s/api)",
        ]
    );
}

#[test]
fn scaling_down_removes_the_highest_numbers_even_without_prune() {
    let three = desired(&[("s", SCALED)]);
    let o = converged(&three);
    let no_prune = PlanOptions::default();
    let two = desired(&[("s", &SCALED.replace("replicas: 3", "replicas: 2"))]);
    assert_eq!(
        lines(&plan(&two, &o, &no_prune)),
        ["- container s-api-3 (s/api): scaled down to 2"]
    );
    let zero = desired(&[("s", &SCALED.replace("replicas: 3", "replicas: 0"))]);
    assert_eq!(
        lines(&plan(&zero, &o, &no_prune)),
        [
            "- container s-api-3 (s/api): scaled down to 0",
            "- container s-api-2 (s/api): scaled down to 0",
            "- container s-api-1 (s/api): scaled down to 0",
        ]
    );
}

#[test]
fn each_replica_is_repaired_and_recreated_on_its_own() {
    let three = desired(&[("s", SCALED)]);
    let mut o = converged(&three);
    o.containers[1].state = "exited".into();
    o.containers[1].exit_code = Some(1);
    assert_eq!(
        lines(&plan(&three, &o, &opts())),
        ["~ container s-api-2 (s/api): start, not running"]
    );
    let changed = desired(&[(
        "s",
        &SCALED.replace(
            "image: busybox:1",
            "image: busybox:1\n    environment: {A: b}",
        ),
    )]);
    assert_eq!(
        lines(&plan(&changed, &o, &opts())),
        [
            "~ container s-api-1 (s/api): recreate, environment changed",
            "~ container s-api-2 (s/api): recreate, environment changed",
            "~ container s-api-3 (s/api): recreate, environment changed",
        ]
    );
}

#[test]
fn compose_replicas_are_adopted_by_number() {
    let two = desired(&[("s", &SCALED.replace("replicas: 3", "replicas: 2"))]);
    let compose = |id: &str, n: u32| ObservedContainer {
        id: id.into(),
        name: format!("s_api_{n}"),
        state: "running".into(),
        labels: BTreeMap::from([
            (labels::COMPOSE_PROJECT.into(), "s".into()),
            (labels::COMPOSE_SERVICE.into(), "api".into()),
            (labels::COMPOSE_CONTAINER_NUMBER.into(), n.to_string()),
        ]),
        ..Default::default()
    };
    let o = Observed {
        containers: vec![compose("a", 1), compose("b", 2), compose("c", 3)],
        ..Default::default()
    };
    let p = plan(&two, &o, &opts());
    let adopted: Vec<(String, Vec<String>)> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::AdoptContainer { container, ids, .. } => Some((container.clone(), ids.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        adopted,
        [
            (
                "s-api-1".to_string(),
                vec!["a".to_string(), "c".to_string()]
            ),
            ("s-api-2".to_string(), vec!["b".to_string()]),
        ]
    );
}

const ONE: &str = "services:\n  s:\n    image: busybox:1\n";
const ORDER: &str = "stacks:\n  apps: {after: [registry]}\n  tools: {after: [apps]}\n";

#[test]
fn stacks_start_in_their_order_and_are_pruned_in_reverse() {
    let all = [
        ("tools", ONE),
        ("apps", ONE),
        ("registry", ONE),
        ("other", ONE),
    ];
    let d = desired_ordered(ORDER, &all, &["tools", "apps", "registry"]);
    let created: Vec<String> = plan(&d, &Observed::default(), &opts())
        .steps
        .iter()
        .filter_map(|s| s.service().map(str::to_string))
        .collect();
    assert_eq!(created, ["registry/s", "apps/s", "tools/s"]);
    assert_eq!(
        d.dependencies(d.service("apps/s").unwrap()),
        [(
            "registry/s".to_string(),
            crate::desired::compose::Condition::ServiceStarted
        )]
    );

    // The host drops all three: later stacks are removed first.
    let before = converged(&d);
    let now = desired_ordered(ORDER, &all, &["other"]);
    let removed: Vec<String> = plan(&now, &before, &opts())
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::RemoveContainer { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["tools/s", "apps/s", "registry/s"]);
}

#[test]
fn an_after_stack_the_host_does_not_run_is_no_constraint() {
    let all = [("tools", ONE), ("apps", ONE), ("registry", ONE)];
    let d = desired_ordered(ORDER, &all, &["apps"]);
    assert!(d.dependencies(d.service("apps/s").unwrap()).is_empty());
}
