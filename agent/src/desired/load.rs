//! Reading the desired-state directory: `hosts.yaml`, then each stack the host runs.
//!
//! Every file is parsed as YAML, interpolated, then deserialised piece by piece (each service,
//! network and volume on its own) so one bad service does not hide the problems of the next:
//! `validate` reports them all at once.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::compose::{self, FileDef, NetworkDef, Service, VolumeDef};
use super::hosts::{HostSelection, HostsFile};
use super::interpolate::Env;
use super::lines::{self, LineIndex};
use crate::diag::Diagnostics;

pub const HOSTS_FILE: &str = "hosts.yaml";
pub const STACKS_DIR: &str = "stacks";
const COMPOSE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// One parsed YAML file with what is needed to point at its lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the desired-state root, as shown in diagnostics.
    pub rel: PathBuf,
    pub lines: LineIndex,
}

#[derive(Debug, Clone)]
pub struct LoadedStack {
    pub name: String,
    /// Compose project name: the file's `name:` or the stack directory name.
    pub project: String,
    /// Whether `project` came from `name:` (rather than the directory).
    pub named: bool,
    /// Directory of the compose file (absolute); relative paths in the file resolve here.
    pub dir: PathBuf,
    pub source: SourceFile,
    pub services: IndexMap<String, Service>,
    pub networks: IndexMap<String, NetworkDef>,
    pub volumes: IndexMap<String, VolumeDef>,
    pub secrets: IndexMap<String, FileDef>,
    pub configs: IndexMap<String, FileDef>,
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub root: PathBuf,
    pub selection: HostSelection,
    pub hosts_source: SourceFile,
    pub stacks: Vec<LoadedStack>,
}

/// Read a YAML file and interpolate it. Syntax and interpolation problems go to `diags`;
/// `None` when the file could not be read or parsed at all.
pub fn read_yaml(
    root: &Path,
    rel: &Path,
    env: &Env,
    diags: &mut Diagnostics,
) -> Option<(Value, SourceFile)> {
    let text = match std::fs::read_to_string(root.join(rel)) {
        Ok(t) => t,
        Err(e) => {
            diags.error(rel, None, "", format!("cannot read: {e}"));
            return None;
        }
    };
    let mut value: Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(crate::diag::Diagnostic::error(
                rel,
                e.location().map(|l| l.line()),
                "",
                format!("YAML syntax: {e}"),
            ));
            return None;
        }
    };
    let source = SourceFile {
        rel: rel.to_path_buf(),
        lines: LineIndex::build(&text),
    };
    env.interpolate_value(&mut value, "", &mut |path, err| {
        diags.error(rel, Some(&source.lines), path, err.to_string());
    });
    Some((value, source))
}

/// Deserialise `value` (found at `path` in `file`) into `T`, reporting every unknown key and
/// the first type error with its full path. `supported` names the keys allowed at a path.
pub fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &str,
    file: &SourceFile,
    supported: &dyn Fn(&str) -> &'static [&'static str],
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
    let ignored = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let result: Result<T, _> = serde_path_to_error::deserialize(ignored);
    for rel in unknown {
        let full = lines::join(path, &rel);
        let key = rel.rsplit('.').next().unwrap_or(&rel).to_string();
        if key.starts_with("x-") {
            continue;
        }
        let keys = supported(&full);
        let hint = if keys.is_empty() {
            String::new()
        } else {
            format!(" (supported: {})", keys.join(", "))
        };
        diags.error(
            &file.rel,
            Some(&file.lines),
            full,
            format!("unknown key {key:?}{hint}"),
        );
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." {
                path.to_string()
            } else {
                lines::join(path, &inner)
            };
            diags.error(
                &file.rel,
                Some(&file.lines),
                full,
                e.into_inner().to_string(),
            );
            None
        }
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => lines::index(&ignored_path(parent), *index),
        P::Map { parent, key } => lines::join(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// Load `hosts.yaml` and every stack `host` runs.
pub fn load(root: &Path, host: &str, env: &Env) -> (Option<Loaded>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let hosts_rel = Path::new(HOSTS_FILE);
    let Some((value, hosts_source)) = read_yaml(root, hosts_rel, env, &mut diags) else {
        return (None, diags);
    };
    let no_keys = |_: &str| -> &'static [&'static str] { &[] };
    let Some(hosts): Option<HostsFile> =
        deserialize_at(value, "", &hosts_source, &no_keys, &mut diags)
    else {
        return (None, diags);
    };
    let selection = match hosts.select(host) {
        Ok(s) => s,
        Err((path, msg)) => {
            diags.error(hosts_rel, Some(&hosts_source.lines), path, msg);
            return (None, diags);
        }
    };
    let mut stacks = Vec::new();
    for name in &selection.stacks {
        if let Some(stack) = load_stack(root, name, env, &mut diags) {
            stacks.push(stack);
        } else if !stack_exists(root, name) {
            diags.error(
                hosts_rel,
                Some(&hosts_source.lines),
                format!("hosts.{}", selection.entry),
                format!("stack {name:?} has no compose file under {STACKS_DIR}/{name}/ (expected compose.yaml)"),
            );
        }
    }
    (
        Some(Loaded {
            root: root.to_path_buf(),
            selection,
            hosts_source,
            stacks,
        }),
        diags,
    )
}

fn stack_exists(root: &Path, name: &str) -> bool {
    compose_file(root, name).is_some()
}

fn compose_file(root: &Path, name: &str) -> Option<PathBuf> {
    COMPOSE_NAMES
        .iter()
        .map(|f| Path::new(STACKS_DIR).join(name).join(f))
        .find(|rel| root.join(rel).is_file())
}

fn load_stack(root: &Path, name: &str, env: &Env, diags: &mut Diagnostics) -> Option<LoadedStack> {
    let rel = compose_file(root, name)?;
    let (value, source) = read_yaml(root, &rel, env, diags)?;
    let Value::Mapping(top) = value else {
        diags.error(
            &rel,
            Some(&source.lines),
            "",
            "expected a mapping with services, networks, volumes",
        );
        return None;
    };
    let mut project = name.to_string();
    let mut named = false;
    let mut services = IndexMap::new();
    let mut networks = IndexMap::new();
    let mut volumes = IndexMap::new();
    let mut secrets = IndexMap::new();
    let mut configs = IndexMap::new();
    for (k, v) in top {
        let key = k.as_str().unwrap_or_default().to_string();
        match key.as_str() {
            "name" => match v.as_str() {
                Some(n) => {
                    project = n.to_string();
                    named = true;
                }
                None => diags.error(&rel, Some(&source.lines), "name", "expected a string"),
            },
            "version" => diags.warn(
                &rel,
                Some(&source.lines),
                "version",
                "`version` is obsolete and ignored (as docker compose ignores it)",
            ),
            "secrets" => each_entry::<FileDef>(v, "secrets", &source, diags, &mut secrets),
            "configs" => each_entry::<FileDef>(v, "configs", &source, diags, &mut configs),
            "services" => each_entry::<Service>(v, "services", &source, diags, &mut services),
            "networks" => each_entry::<NetworkDef>(v, "networks", &source, diags, &mut networks),
            "volumes" => each_entry::<VolumeDef>(v, "volumes", &source, diags, &mut volumes),
            k if k.starts_with("x-") => {}
            other => diags.error(
                &rel,
                Some(&source.lines),
                other,
                format!(
                    "unknown key {other:?} (supported: {})",
                    compose::TOP_LEVEL_KEYS.join(", ")
                ),
            ),
        }
    }
    Some(LoadedStack {
        name: name.to_string(),
        project,
        named,
        dir: root.join(rel.parent().expect("compose file path has a parent")),
        source,
        services,
        networks,
        volumes,
        secrets,
        configs,
    })
}

/// Each `name: definition` of a top-level section; a bare `name:` is the default definition,
/// and an empty section is no definitions (both as Compose reads them).
fn each_entry<T: DeserializeOwned + Default>(
    v: Value,
    section: &str,
    source: &SourceFile,
    diags: &mut Diagnostics,
    out: &mut IndexMap<String, T>,
) {
    let Value::Mapping(map) = v else {
        if !v.is_null() {
            diags.error(
                &source.rel,
                Some(&source.lines),
                section,
                "expected a mapping of name: definition",
            );
        }
        return;
    };
    for (k, v) in map {
        let name = k.as_str().unwrap_or_default().to_string();
        let path = lines::join(section, &name);
        if v.is_null() {
            out.insert(name, T::default());
        } else if let Some(d) =
            deserialize_at::<T>(v, &path, source, &compose::supported_keys_at, diags)
        {
            out.insert(name, d);
        }
    }
}
