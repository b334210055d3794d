//! The labels that mark what this agent owns and what it last applied.
//! Ownership is (managed, host): two hosts sharing one engine never touch each other's objects.

use std::collections::BTreeMap;

pub const MANAGED: &str = "io.macula.gitops.managed";
pub const HOST: &str = "io.macula.gitops.host";
pub const STACK: &str = "io.macula.gitops.stack";
pub const SERVICE: &str = "io.macula.gitops.service";
pub const SPEC_HASH: &str = "io.macula.gitops.spec-hash";
pub const FIELDS: &str = "io.macula.gitops.fields";
pub const REVISION: &str = "io.macula.gitops.revision";
pub const CONTEXT_DIGEST: &str = "io.macula.gitops.context-digest";

/// Labels on everything the agent creates for `host`.
pub fn ownership(host: &str, stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (HOST.to_string(), host.to_string()),
        (STACK.to_string(), stack.to_string()),
    ])
}

/// Does `labels` say this agent, on `host`, owns the object?
pub fn owned_by(labels: &BTreeMap<String, String>, host: &str) -> bool {
    labels.get(MANAGED).map(String::as_str) == Some("true")
        && labels.get(HOST).map(String::as_str) == Some(host)
}

/// Which replica of its service a container is (compose's `container-number`); 1 when absent.
pub fn container_number(labels: &BTreeMap<String, String>) -> u32 {
    labels
        .get(COMPOSE_CONTAINER_NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The labels docker compose puts on a service's container, so `docker compose ps/logs/top`
/// and tools built on them see the agent's stacks (compose's `api.ProjectLabel` and friends).
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
pub const COMPOSE_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";

pub fn compose_container(
    project: &str,
    service: &str,
    number: u32,
    config_hash: &str,
    config_file: &std::path::Path,
) -> BTreeMap<String, String> {
    let dir = config_file.parent().unwrap_or(std::path::Path::new("/"));
    BTreeMap::from([
        (COMPOSE_PROJECT.to_string(), project.to_string()),
        (COMPOSE_SERVICE.to_string(), service.to_string()),
        (COMPOSE_CONTAINER_NUMBER.to_string(), number.to_string()),
        (COMPOSE_ONEOFF.to_string(), "False".to_string()),
        (
            "com.docker.compose.config-hash".to_string(),
            config_hash.to_string(),
        ),
        (
            "com.docker.compose.project.working_dir".to_string(),
            dir.display().to_string(),
        ),
        (
            "com.docker.compose.project.config_files".to_string(),
            config_file.display().to_string(),
        ),
        (
            COMPOSE_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

/// The labels docker compose puts on a network or volume it creates: the project, the key the
/// compose file defines it under (`kind` is [`COMPOSE_NETWORK`] or [`COMPOSE_VOLUME`]), the
/// version. The key, as compose v2 writes it and checks it on `up` (v1 writes the `name:` there
/// when one is set, and never reads the label back). Written only when the object is created:
/// Docker cannot relabel a network or a volume, and recreating one to add labels would cut off
/// the containers attached to it or lose the volume's data.
pub fn compose_resource(kind: &str, project: &str, key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (COMPOSE_PROJECT.to_string(), project.to_string()),
        (kind.to_string(), key.to_string()),
        (
            COMPOSE_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}
