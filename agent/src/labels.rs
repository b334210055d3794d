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
