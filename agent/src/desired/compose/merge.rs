//! Compose's merge rules, the one implementation behind `extends`, a main file's keys over a
//! service, network, volume, secret or config its `include:`d files define, include override
//! files, and the `!reset` / `!override` tags.
//!
//! The rules are compose-go's (`override/merge.go`, `override/uncity.go`, the Compose
//! Specification's merge.md), applied to the YAML values before they are typed:
//! mappings merge key by key, sequences are appended, scalars are replaced; `command`,
//! `entrypoint` and `healthcheck.test` are replaced whole; `environment`, `labels`, `env_file`,
//! `dns*`, `sysctls`, `tmpfs`, `annotations` and `build.args`/`labels` become `KEY=value` lists
//! and are appended; `depends_on` and `networks` merge as mappings (a list is read as one);
//! `extra_hosts` keeps the base's entries and adds the new ones; `logging` merges only when both
//! name the same driver (or one names none); `build: dir` is `build: {context: dir}`; network
//! and volume `labels` merge by name; a network's `ipam.config` entries merge by `subnet`. After
//! a merge each list keeps one entry per key (a port, a mount target, a variable or label name):
//! the later entry replaces the earlier one in its place.
//!
//! `!reset` on a key of the overriding file removes the key from the base; `!override` replaces
//! the base's value instead of merging with it. Without a base the tags just go away.

use std::path::{Component, Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// A value that cannot be merged over the other: compose refuses the same.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("cannot merge {over} over {base} (compose merges a mapping only with a mapping and a list only with a list; write `!override` to replace it)")]
    Shape {
        path: String,
        base: &'static str,
        over: &'static str,
    },
}

impl MergeError {
    /// Dotted path of the value that could not be merged.
    pub fn path(&self) -> &str {
        match self {
            MergeError::Shape { path, .. } => path,
        }
    }
}

/// Merge the definition `over` of `section.name` (e.g. `services.web`) over `base`, reading
/// `over`'s tags. The result carries no tags.
pub fn merge_entry(section: &str, base: Value, over: Value) -> Result<Value, MergeError> {
    let mut path = vec![section.to_string(), "*".to_string()];
    let merged = match tag(over) {
        Tagged::Reset => Value::Mapping(Mapping::new()),
        Tagged::Override(v) => strip(v).unwrap_or_default(),
        Tagged::Plain(v) => merge_at(&mut path, strip(base).unwrap_or_default(), v)?,
    };
    Ok(unique(merged, &mut path))
}

/// A definition read alone: `!reset` keys removed, `!override` values as written.
pub fn strip(v: Value) -> Option<Value> {
    match tag(v) {
        Tagged::Reset => None,
        Tagged::Override(v) | Tagged::Plain(v) => Some(match v {
            Value::Mapping(m) => Value::Mapping(
                m.into_iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k, v)))
                    .collect(),
            ),
            Value::Sequence(s) => Value::Sequence(s.into_iter().filter_map(strip).collect()),
            other => other,
        }),
    }
}

enum Tagged {
    Reset,
    Override(Value),
    Plain(Value),
}

fn tag(v: Value) -> Tagged {
    match v {
        Value::Tagged(t) if t.tag == "reset" => Tagged::Reset,
        Value::Tagged(t) if t.tag == "override" => Tagged::Override(t.value),
        other => Tagged::Plain(other),
    }
}

/// How two values at one path combine (compose-go's `mergeSpecials`).
#[derive(Clone, Copy)]
enum Rule {
    Default,
    Replace,
    ToSequence,
    ExtraHosts,
    Build,
    Logging,
    ToMapping,
    DependsOn,
    BySubnet,
}

fn rule(path: &[String]) -> Rule {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["services", _, rest @ ..] => match rest {
            ["command" | "entrypoint"] | ["healthcheck", "test"] | ["ulimits", _] => Rule::Replace,
            ["annotations" | "env_file" | "label_file" | "environment" | "labels" | "dns"
            | "dns_opt" | "dns_search" | "sysctls" | "tmpfs"]
            | ["build", "args" | "additional_contexts" | "labels"]
            | ["deploy", "labels"] => Rule::ToSequence,
            ["extra_hosts"] | ["build", "extra_hosts"] => Rule::ExtraHosts,
            ["build"] => Rule::Build,
            ["logging"] => Rule::Logging,
            ["networks"] => Rule::ToMapping,
            ["depends_on"] => Rule::DependsOn,
            _ => Rule::Default,
        },
        ["networks" | "volumes", _, "labels"] => Rule::ToSequence,
        ["networks", _, "ipam", "config"] => Rule::BySubnet,
        _ => Rule::Default,
    }
}

fn merge_at(path: &mut Vec<String>, base: Value, over: Value) -> Result<Value, MergeError> {
    let plain = |v: Value| strip(v).unwrap_or_default();
    match rule(path) {
        Rule::Replace => Ok(plain(over)),
        Rule::ToSequence => {
            let mut out = to_sequence(base);
            out.extend(to_sequence(plain(over)));
            Ok(Value::Sequence(out))
        }
        Rule::ExtraHosts => {
            let mut out = to_sequence(base);
            for v in to_sequence(plain(over)) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Sequence(out))
        }
        Rule::Build => {
            let context = |v: Value| match v {
                Value::String(s) => {
                    let mut m = Mapping::new();
                    m.insert("context".into(), Value::String(s));
                    Value::Mapping(m)
                }
                other => other,
            };
            merge_values(path, context(base), context(over))
        }
        Rule::Logging => {
            let driver = |v: &Value| v.get("driver").cloned();
            match (driver(&base), driver(&over)) {
                (Some(a), Some(b)) if a != b => Ok(plain(over)),
                _ => merge_values(path, base, over),
            }
        }
        Rule::ToMapping => merge_values(path, to_mapping(base, None), to_mapping(over, None)),
        Rule::DependsOn => {
            let mut started = Mapping::new();
            started.insert("condition".into(), "service_started".into());
            started.insert("required".into(), Value::Bool(true));
            let d = Some(&Value::Mapping(started));
            merge_values(path, to_mapping(base, d), to_mapping(over, d))
        }
        Rule::BySubnet => by_subnet(path, base, plain(over)),
        Rule::Default => merge_values(path, base, over),
    }
}

/// `ipam.config` entries keyed by `subnet`: an override entry merges into the base's entry for
/// the same subnet, in its place, and a new subnet is added after the base's (compose-go's
/// `mergeIPAMConfig` keys them the same way; an override file can thus change a subnet's
/// gateway without writing a second pool for it).
fn by_subnet(path: &mut Vec<String>, base: Value, over: Value) -> Result<Value, MergeError> {
    let (mut out, over) = match (base, over) {
        (b, Value::Null) => return Ok(b),
        (Value::Sequence(b), Value::Sequence(o)) => (b, o),
        (b, o) => {
            return Err(MergeError::Shape {
                path: path.join("."),
                base: kind(&b),
                over: kind(&o),
            })
        }
    };
    let subnet = |v: &Value| v.get("subnet").and_then(scalar_text);
    for entry in over {
        match out.iter().position(|b| subnet(b) == subnet(&entry)) {
            Some(i) => out[i] = merge_values(path, std::mem::take(&mut out[i]), entry)?,
            None => out.push(entry),
        }
    }
    Ok(Value::Sequence(out))
}

fn merge_values(path: &mut Vec<String>, base: Value, over: Value) -> Result<Value, MergeError> {
    if over.is_null() {
        return Ok(base);
    }
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                match tag(v) {
                    Tagged::Reset => {
                        b.remove(&k);
                    }
                    Tagged::Override(v) => {
                        b.insert(k, strip(v).unwrap_or_default());
                    }
                    Tagged::Plain(v) => {
                        // Tags deeper in `v` still apply to what they meet in the base.
                        let merged = match b.remove(&k) {
                            Some(e) => {
                                path.push(key_text(&k));
                                let m = merge_at(path, e, v);
                                path.pop();
                                m?
                            }
                            None => strip(v).unwrap_or_default(),
                        };
                        b.insert(k, merged);
                    }
                }
            }
            Ok(Value::Mapping(b))
        }
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            b.extend(o.into_iter().filter_map(strip));
            Ok(Value::Sequence(b))
        }
        (b @ (Value::Mapping(_) | Value::Sequence(_)), o) => Err(MergeError::Shape {
            path: path.join("."),
            base: kind(&b),
            over: kind(&o),
        }),
        (_, o) => Ok(strip(o).unwrap_or_default()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Mapping(_) => "a mapping",
        Value::Sequence(_) => "a list",
        _ => "a single value",
    }
}

fn key_text(k: &Value) -> String {
    scalar_text(k).unwrap_or_default()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// compose-go's `convertIntoSequence`: `{K: v}` → sorted `["K=v"]`, a bare `K:` → `"K"`.
fn to_sequence(v: Value) -> Vec<Value> {
    match v {
        Value::Mapping(m) => {
            let mut out: Vec<String> = Vec::new();
            for (k, v) in m {
                let k = key_text(&k);
                match v {
                    Value::Null => out.push(k),
                    Value::Sequence(items) => out.extend(
                        items
                            .iter()
                            .map(|i| format!("{k}={}", scalar_text(i).unwrap_or_default())),
                    ),
                    other => out.push(format!("{k}={}", scalar_text(&other).unwrap_or_default())),
                }
            }
            out.sort();
            out.into_iter().map(Value::String).collect()
        }
        Value::Sequence(s) => s,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// compose-go's `convertIntoMapping`: a list of names → `{name: default}`.
fn to_mapping(v: Value, default: Option<&Value>) -> Value {
    match v {
        Value::Sequence(items) => Value::Mapping(
            items
                .into_iter()
                .map(|i| (i, default.cloned().unwrap_or(Value::Null)))
                .collect(),
        ),
        other => other,
    }
}

/// One entry per key in the lists compose keeps unique (compose-go's `EnforceUnicity`).
fn unique(v: Value, path: &mut Vec<String>) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, v)| {
                    path.push(key_text(&k));
                    let v = unique(v, path);
                    path.pop();
                    (k, v)
                })
                .collect(),
        ),
        Value::Sequence(items) => match index_of(path) {
            Some(index) => {
                let mut out: Vec<Value> = Vec::new();
                let mut keys: Vec<String> = Vec::new();
                for item in items {
                    let key = index(&item);
                    match keys.iter().position(|k| *k == key) {
                        Some(i) => out[i] = item,
                        None => {
                            keys.push(key);
                            out.push(item);
                        }
                    }
                }
                Value::Sequence(out)
            }
            None => Value::Sequence(items),
        },
        other => other,
    }
}

type Indexer = fn(&Value) -> String;

fn index_of(path: &[String]) -> Option<Indexer> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let rest = match p.as_slice() {
        ["services", _, rest @ ..] => rest,
        ["networks" | "volumes", _, "labels"] | ["networks", _, "ipam", "options"] => {
            return Some(key_of_entry)
        }
        _ => return None,
    };
    Some(match rest {
        ["annotations" | "cap_add" | "cap_drop" | "dns" | "dns_opt" | "dns_search"
        | "environment" | "labels" | "links" | "profiles" | "sysctls" | "tmpfs"]
        | ["build", "args" | "additional_contexts" | "tags" | "labels"]
        | ["deploy", "labels"]
        | ["networks", _, "aliases" | "link_local_ips"] => key_of_entry,
        // `source:target[:mode]` or a long form, keyed by the target.
        ["volumes" | "devices"] => |v| match v {
            Value::Mapping(_) => v.get("target").and_then(scalar_text).unwrap_or_default(),
            _ => {
                let t = scalar_text(v).unwrap_or_default();
                let parts: Vec<&str> = t.split(':').collect();
                parts.get(1).unwrap_or(&parts[0]).to_string()
            }
        },
        ["secrets"] => |v| mount_key(v, "/run/secrets"),
        ["configs"] => |v| mount_key(v, ""),
        ["env_file"] => |v| match v {
            Value::Mapping(_) => v.get("path").and_then(scalar_text).unwrap_or_default(),
            _ => scalar_text(v).unwrap_or_default(),
        },
        ["expose"] => |v| scalar_text(v).unwrap_or_default(),
        ["ports"] => |v| match v {
            Value::Mapping(_) => {
                let f = |k: &str, d: &str| v.get(k).and_then(scalar_text).unwrap_or(d.into());
                format!(
                    "{}:{}:{}/{}",
                    f("host_ip", "0.0.0.0"),
                    f("published", ""),
                    f("target", ""),
                    f("protocol", "tcp")
                )
            }
            _ => scalar_text(v).unwrap_or_default(),
        },
        _ => return None,
    })
}

/// `KEY=value` → `KEY`.
fn key_of_entry(v: &Value) -> String {
    let t = scalar_text(v).unwrap_or_default();
    t.split_once('=').map_or(t.clone(), |(k, _)| k.to_string())
}

fn mount_key(v: &Value, dir: &str) -> String {
    match v {
        Value::Mapping(_) => match v.get("target").and_then(scalar_text) {
            Some(t) => t,
            None => format!(
                "{dir}/{}",
                v.get("source").and_then(scalar_text).unwrap_or_default()
            ),
        },
        _ => format!("{dir}/{}", scalar_text(v).unwrap_or_default()),
    }
}

/// Rewrite the relative paths of a service definition written in directory `from` so they
/// name the same files from directory `to` (both inside the desired-state directory): a
/// definition that moves into another file keeps pointing where its author meant, as compose
/// resolves an included or extended file's paths against that file's directory.
pub fn rebase_service(v: &mut Value, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    let Value::Mapping(m) = v else { return };
    let re = |s: &str| rebase(s, from, to);
    if let Some(b) = m.get_mut("build") {
        match b {
            Value::String(s) if is_local(s) => *s = re(s),
            Value::Mapping(b) => {
                if let Some(Value::String(s)) = b.get_mut("context") {
                    if is_local(s) {
                        *s = re(s);
                    }
                }
            }
            _ => {}
        }
    }
    for key in ["env_file", "label_file"] {
        match m.get_mut(key) {
            Some(Value::String(s)) => *s = re(s),
            Some(Value::Sequence(items)) => {
                for i in items {
                    match i {
                        Value::String(s) => *s = re(s),
                        Value::Mapping(e) => {
                            if let Some(Value::String(s)) = e.get_mut("path") {
                                *s = re(s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Sequence(items)) = m.get_mut("volumes") {
        for i in items {
            match i {
                Value::String(s) if s.starts_with('.') => {
                    let (src, rest) = s.split_once(':').unwrap_or((s.as_str(), ""));
                    let src = re(src);
                    *s = if rest.is_empty() {
                        src
                    } else {
                        format!("{src}:{rest}")
                    };
                }
                Value::Mapping(e) if e.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(Value::String(s)) = e.get_mut("source") {
                        if !Path::new(s.as_str()).is_absolute() && !s.starts_with('~') {
                            *s = re(s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A top-level secret or config definition moved from directory `from` to `to`: its `file:`
/// keeps naming the same file.
pub fn rebase_file_def(v: &mut Value, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    if let Some(Value::String(s)) = v.get_mut("file") {
        *s = rebase(s, from, to);
    }
}

/// A build context on disk (not a git or http URL).
fn is_local(s: &str) -> bool {
    !s.contains("://") && !s.starts_with("git@")
}

/// `p` (relative to `from`) relative to `to`, lexically, starting with `.` so a volume source
/// still reads as a path.
fn rebase(p: &str, from: &Path, to: &Path) -> String {
    if Path::new(p).is_absolute() || p.starts_with('~') {
        return p.to_string();
    }
    let target = normalise(&from.join(p));
    let to = normalise(to);
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    let s = out.to_string_lossy().into_owned();
    if s.is_empty() {
        ".".into()
    } else if s.starts_with("..") {
        s
    } else {
        format!("./{s}")
    }
}

/// `a/./b/../c` → `a/c`, keeping `..` that climb above the start (checked later, where the
/// path is resolved inside the desired-state directory).
fn normalise(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests;
