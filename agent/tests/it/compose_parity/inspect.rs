//! `docker inspect` of one container reduced to the fields parity compares, each normalised so
//! that only differences a user would notice remain: names that embed the project, the
//! container's own id, tool labels, and where the bytes of a bind mount live.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

/// Container config fields compared as Docker reports them (after `normalise`).
const CONFIG: &[&str] = &[
    "Image",
    "Env",
    "Cmd",
    "Entrypoint",
    "User",
    "WorkingDir",
    "Hostname",
    "Domainname",
    "Labels",
    "ExposedPorts",
    "Healthcheck",
    "StopSignal",
    "StopTimeout",
    "Tty",
    "OpenStdin",
    "AttachStdin",
    "StdinOnce",
    "MacAddress",
];

const HOST_CONFIG: &[&str] = &[
    "PortBindings",
    "CapAdd",
    "CapDrop",
    "ExtraHosts",
    "RestartPolicy",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "PidsLimit",
    "OomKillDisable",
    "OomScoreAdj",
    "Ulimits",
    "Sysctls",
    "ShmSize",
    "Tmpfs",
    "Devices",
    "Privileged",
    "ReadonlyRootfs",
    "Init",
    "SecurityOpt",
    "LogConfig",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupParent",
    "GroupAdd",
    "Runtime",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "Links",
];

/// Labels the tools add to describe their own bookkeeping; never part of what the user asked for.
const TOOL_LABELS: &[&str] = &["com.docker.compose.", "io.macula.gitops."];

/// Who created the container, for the few normalisations that depend on it.
pub struct Side<'a> {
    /// The compose project / agent stack name; replaced by `<project>` everywhere.
    pub project: &'a str,
    /// Directories a bind source is "a file of the repo" under: the compose project directory,
    /// or the agent's content-addressed `<state>/files/<sha256>/` copies (read-only binds) and
    /// its data root `<data>/<stack>/<path>` (read-write binds, seeded from the repo once).
    pub repo_dirs: Vec<&'a Path>,
}

/// `field → normalised value` for one container; null and empty values are dropped so that
/// "compose leaves it unset" equals "the agent sends an empty list".
pub fn fields(inspect: &Value, side: &Side) -> BTreeMap<String, Value> {
    let id = inspect["Id"].as_str().unwrap_or_default();
    let short_id = &id[..id.len().min(12)];
    let mut out = BTreeMap::new();
    for (section, names) in [("Config", CONFIG), ("HostConfig", HOST_CONFIG)] {
        for name in names {
            let v = normalise(name, inspect[section][name].clone(), short_id);
            put(&mut out, format!("{section}.{name}"), v, side);
        }
    }
    put(
        &mut out,
        "Mounts".into(),
        mounts(&inspect["Mounts"], side),
        side,
    );
    if let Some(nets) = inspect["NetworkSettings"]["Networks"].as_object() {
        for (net, ep) in nets {
            put(
                &mut out,
                format!("Networks.{net}"),
                endpoint(ep, short_id),
                side,
            );
        }
    }
    out
}

fn put(out: &mut BTreeMap<String, Value>, key: String, v: Value, side: &Side) {
    let v = deproject(v, side.project);
    if !is_empty(&v) {
        out.insert(key.replace(side.project, "<project>"), v);
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn normalise(name: &str, v: Value, short_id: &str) -> Value {
    match (name, v) {
        // Docker's default hostname is the container id: equal in meaning, never in value.
        ("Hostname", Value::String(h)) if h == short_id => json!("<container id>"),
        ("Labels", Value::Object(m)) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !TOOL_LABELS.iter().any(|p| k.starts_with(p)))
                .collect(),
        ),
        // The order of environment entries has no meaning to the process.
        ("Env", Value::Array(mut a)) => {
            a.sort_by_key(|v| v.to_string());
            Value::Array(a)
        }
        // "" and "no" are the same policy; Docker reports whichever the client sent.
        ("RestartPolicy", Value::Object(m))
            if matches!(m.get("Name").and_then(Value::as_str), Some("" | "no"))
                && m.get("MaximumRetryCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    == 0 =>
        {
            Value::Null
        }
        (_, v) => v,
    }
}

/// Effective mounts by target: type, read-only, propagation and what the source means.
fn mounts(list: &Value, side: &Side) -> Value {
    let mut out = serde_json::Map::new();
    for m in list.as_array().into_iter().flatten() {
        let typ = m["Type"].as_str().unwrap_or_default();
        let source = match typ {
            "volume" => json!({"volume": m["Name"]}),
            "bind" => bind_source(m["Source"].as_str().unwrap_or_default(), side),
            _ => m["Source"].clone(),
        };
        out.insert(
            m["Destination"].as_str().unwrap_or_default().to_string(),
            json!({
                "type": typ,
                "source": source,
                "read_only": !m["RW"].as_bool().unwrap_or(true),
                "propagation": m["Propagation"],
            }),
        );
    }
    Value::Object(out)
}

/// A bind of a repo file is compared by its file name: compose binds it where it lies in the
/// project directory, the agent a content-addressed copy of the same bytes (read-only) or the
/// stack's persistent data directory of that name (read-write).
fn bind_source(source: &str, side: &Side) -> Value {
    let path = Path::new(source);
    for dir in &side.repo_dirs {
        if let Ok(rel) = path.strip_prefix(dir) {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return json!({"repo file": name});
        }
    }
    json!({"host path": source})
}

fn endpoint(ep: &Value, short_id: &str) -> Value {
    let mut aliases: Vec<String> = ep["Aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != short_id)
        .map(str::to_string)
        .collect();
    aliases.sort();
    json!({
        "aliases": aliases,
        "ipv4_address": ep["IPAMConfig"]["IPv4Address"],
        "ipv6_address": ep["IPAMConfig"]["IPv6Address"],
        "link_local_ips": ep["IPAMConfig"]["LinkLocalIPs"],
        "links": ep["Links"],
    })
}

/// Replace the project name inside every string: compose names things `<project>_x`, the agent
/// `<stack>_x`, and both are the same user-visible name.
fn deproject(v: Value, project: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(project, "<project>")),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| deproject(v, project)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k.replace(project, "<project>"), deproject(v, project)))
                .collect(),
        ),
        v => v,
    }
}

/// Ids of the project's own containers (in `container:<id>` network/ipc/pid modes, and as the
/// hostname a `network_mode: service:x` container shares with x) become `<id of SERVICE>`: each
/// run creates new containers, but "the container of service x" is the same thing to a user.
pub fn name_ids(v: Value, ids: &[(String, String)]) -> Value {
    match v {
        Value::String(mut s) => {
            for (id, service) in ids {
                if id.len() >= 12 {
                    s = s
                        .replace(id.as_str(), &format!("<id of {service}>"))
                        .replace(&id[..12], &format!("<id of {service}>"));
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| name_ids(v, ids)).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, name_ids(v, ids))).collect())
        }
        v => v,
    }
}
