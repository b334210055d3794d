//! Reading the desired-state directory: `hosts.yaml`, then each stack the host runs.
//!
//! Every file is parsed as YAML, interpolated, then deserialised piece by piece (each service,
//! network and volume on its own) so one bad service does not hide the problems of the next:
//! `validate` reports them all at once.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::combine::{self, Raw, RawService, RawTop};
use super::compose::{self, FileDef, NetworkDef, Service, VolumeDef};
use super::hosts::{HostSelection, HostsFile};
use crate::diag::Diagnostics;
use crate::input::deserialize::unknown_key_message;
use crate::input::interpolate::{parse_dotenv, Env};
pub use crate::input::SourceFile;
use crate::input::{deserialize_at, read_yaml};

pub const HOSTS_FILE: &str = "hosts.yaml";
pub const STACKS_DIR: &str = "stacks";
const COMPOSE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
/// Compose-go's `DefaultOverrideFileNames`: the first one found next to the compose file is
/// merged over it, as `docker compose` does when no `-f` is given.
const OVERRIDE_NAMES: &[&str] = &[
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

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
    /// The services, typed (`combine::finish`) once every definition is merged.
    pub services: IndexMap<String, Service>,
    /// Each service as this file writes it, until `combine` has merged and typed them.
    pub(crate) raw: IndexMap<String, RawService>,
    /// Its top-level networks, volumes, secrets and configs as written, likewise.
    pub(crate) top: RawTop,
    pub networks: IndexMap<String, NetworkDef>,
    pub volumes: IndexMap<String, VolumeDef>,
    pub secrets: IndexMap<String, FileDef>,
    pub configs: IndexMap<String, FileDef>,
    /// Files brought in by top-level `include:` (and those they include, flattened), each
    /// with its own directory (its relative paths resolve there, or in the entry's
    /// `project_directory`, as Compose resolves them) and lines; same project.
    pub included: Vec<LoadedStack>,
    /// The environment this file was read with: the desired-state environment under the
    /// project's `.env` (and an include's `env_file`). Compose resolves from it what the file
    /// leaves to the environment: `environment:` entries without a value, build args without
    /// one, and secrets and configs of `environment:` source.
    pub env: Env,
}

impl LoadedStack {
    /// This file and every file it includes, depth first.
    pub fn parts(&self) -> Vec<&LoadedStack> {
        std::iter::once(self).chain(&self.included).collect()
    }
}

/// How deep `include:` may nest (a cycle is refused before that).
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub struct Loaded {
    pub root: PathBuf,
    pub selection: HostSelection,
    pub hosts_source: SourceFile,
    pub stacks: Vec<LoadedStack>,
}

/// Load `hosts.yaml` and every stack `host` runs.
pub fn load(root: &Path, host: &str, env: &Env) -> (Option<Loaded>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let hosts_rel = Path::new(HOSTS_FILE);
    let Some((value, hosts_source)) = read_yaml(root, hosts_rel, Some(env), &mut diags) else {
        return (None, diags);
    };
    let Some(hosts): Option<HostsFile> =
        deserialize_at(value, "", &hosts_source, &super::hosts::keys_at, &mut diags)
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
        if !is_stack_name(name) {
            diags.error(
                hosts_rel,
                Some(&hosts_source.lines),
                format!("hosts.{}", selection.entry),
                format!("stack name {name:?} is invalid: a stack is a directory stacks/<name>/ named as a Compose project (lowercase letters, digits, '_' and '-', starting with a letter or digit)"),
            );
            continue;
        }
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
    let problems = super::order::check(
        &selection.order,
        |s| is_stack_name(s) && stack_exists(root, s),
        |s| {
            let stack = stacks.iter().find(|l| l.name == s)?;
            Some(
                stack
                    .parts()
                    .iter()
                    .flat_map(|p| p.services.keys().cloned())
                    .collect(),
            )
        },
    );
    for (path, msg) in problems {
        diags.error(hosts_rel, Some(&hosts_source.lines), path, msg);
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

/// The project directory's `.env` (`dir` below the root) under the desired-state
/// environment, as Compose layers them: the process environment, then the desired-state env
/// file, then this file.
fn project_env(root: &Path, dir: &Path, env: &Env, diags: &mut Diagnostics) -> Env {
    let rel = dir.join(".env");
    match std::fs::read_to_string(root.join(&rel)) {
        Ok(text) => env.over(parse_dotenv(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => env.clone(),
        Err(e) => {
            diags.error(&rel, None, "", format!("cannot read: {e}"));
            env.clone()
        }
    }
}

/// Read a compose file (`rel` below `root`): YAML through the one reader, interpolated with
/// `env`, quoted numbers and booleans cast where Compose casts them.
pub(crate) fn read_compose(
    root: &Path,
    rel: &Path,
    env: &Env,
    diags: &mut Diagnostics,
) -> Option<(serde_yaml::Mapping, SourceFile)> {
    let (mut value, source) = read_yaml(root, rel, Some(env), diags)?;
    for (path, message, error) in compose::cast::cast_compose(&mut value) {
        if error {
            diags.error(rel, Some(&source.lines), path, message);
        } else {
            diags.warn(rel, Some(&source.lines), path, message);
        }
    }
    match value {
        Value::Mapping(top) => Some((top, source)),
        _ => {
            diags.error(
                rel,
                Some(&source.lines),
                "",
                "expected a mapping with services, networks, volumes",
            );
            None
        }
    }
}

/// Compose's project-name rule; it also keeps the name one directory below `stacks/`.
fn is_stack_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
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
    let dir = rel.parent().expect("compose file path has a parent");
    let env = project_env(root, dir, env, diags);
    let mut stack = load_file(root, &rel, dir, name, &env, &mut vec![rel.clone()], diags)?;
    let over = OVERRIDE_NAMES
        .iter()
        .map(|f| dir.join(f))
        .find(|r| root.join(r).is_file());
    if let Some(over_rel) = over {
        let over = load_file(
            root,
            &over_rel,
            dir,
            name,
            &env,
            &mut vec![over_rel.clone()],
            diags,
        )?;
        if over.named {
            stack.project.clone_from(&over.project);
            stack.named = true;
        }
        combine::merge_overrides(&mut stack, vec![over], diags);
    }
    combine::finish(&mut stack, diags);
    Some(stack)
}

/// One compose file (the stack's, or one it includes) whose relative paths resolve in
/// `project_dir` (below `root`), read with `env`; `chain` is the include path to it.
fn load_file(
    root: &Path,
    rel: &Path,
    project_dir: &Path,
    name: &str,
    env: &Env,
    chain: &mut Vec<PathBuf>,
    diags: &mut Diagnostics,
) -> Option<LoadedStack> {
    let rel = rel.to_path_buf();
    let (top, source) = read_compose(root, &rel, env, diags)?;
    let mut project = name.to_string();
    let mut named = false;
    let mut raw = IndexMap::new();
    let mut top_defs = RawTop::default();
    let mut included = Vec::new();
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
            "secrets" => each_entry(v, "secrets", &source, diags, &mut top_defs.secrets),
            "configs" => each_entry(v, "configs", &source, diags, &mut top_defs.configs),
            "include" => {
                for entry in include_entries(v, &source, diags) {
                    included.extend(load_include(
                        root,
                        &rel,
                        project_dir,
                        name,
                        env,
                        &entry,
                        chain,
                        &source,
                        diags,
                    ));
                }
            }
            "services" => match v {
                Value::Mapping(m) => {
                    for (k, v) in m {
                        let n = k.as_str().unwrap_or_default().to_string();
                        let r = RawService::read("services", &n, v, &source, diags);
                        raw.insert(n, r);
                    }
                }
                Value::Null => {}
                _ => diags.error(
                    &rel,
                    Some(&source.lines),
                    "services",
                    "expected a mapping of name: definition",
                ),
            },
            "networks" => each_entry(v, "networks", &source, diags, &mut top_defs.networks),
            "volumes" => each_entry(v, "volumes", &source, diags, &mut top_defs.volumes),
            k if k.starts_with("x-") => {}
            other => diags.error(
                &rel,
                Some(&source.lines),
                other,
                unknown_key_message(other, compose::TOP_LEVEL_KEYS),
            ),
        }
    }
    let mut stack = LoadedStack {
        name: name.to_string(),
        project,
        named,
        dir: root.join(project_dir),
        source,
        services: IndexMap::new(),
        raw,
        top: top_defs,
        networks: IndexMap::new(),
        volumes: IndexMap::new(),
        secrets: IndexMap::new(),
        configs: IndexMap::new(),
        included,
        env: env.clone(),
    };
    combine::merge_included(&mut stack, diags);
    combine::apply_extends(root, &mut stack, env, diags);
    Some(stack)
}

/// One `include:` entry: `- path` or `- {path: p | [p, override...], project_directory, env_file}`.
struct IncludeEntry {
    at: String,
    paths: Vec<String>,
    project_directory: Option<String>,
    env_file: Vec<String>,
}

fn include_entries(v: Value, source: &SourceFile, diags: &mut Diagnostics) -> Vec<IncludeEntry> {
    let mut out = Vec::new();
    let mut err = |path: String, msg: String| {
        diags.error(&source.rel, Some(&source.lines), path, msg);
    };
    let Value::Sequence(items) = v else {
        err("include".into(), "expected a list of files".into());
        return out;
    };
    let strings = |v: Value| -> Option<Vec<String>> {
        match v {
            Value::String(p) => Some(vec![p]),
            Value::Sequence(ps) => ps
                .into_iter()
                .map(|p| p.as_str().map(str::to_string))
                .collect(),
            _ => None,
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let mut e = IncludeEntry {
            at: format!("include[{i}]"),
            paths: Vec::new(),
            project_directory: None,
            env_file: Vec::new(),
        };
        match item {
            Value::String(p) => e.paths.push(p),
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default().to_string();
                    let at = format!("{}.{k}", e.at);
                    match k.as_str() {
                        "path" | "env_file" => match strings(v) {
                            Some(l) if k == "path" => e.paths = l,
                            Some(l) => e.env_file = l,
                            None => err(at, "expected a path or a list of paths".into()),
                        },
                        "project_directory" => match v {
                            Value::String(d) => e.project_directory = Some(d),
                            _ => err(at, "expected a directory path".into()),
                        },
                        _ => err(
                            at,
                            unknown_key_message(&k, &["path", "project_directory", "env_file"]),
                        ),
                    }
                }
            }
            _ => err(
                e.at.clone(),
                "expected a path or a mapping with path".into(),
            ),
        }
        if e.paths.is_empty() {
            err(e.at.clone(), "names no file (`path` is required)".into());
        } else {
            out.push(e);
        }
    }
    out
}

/// Load one `include:` entry of the file `rel` (whose paths resolve in `dir`): its first file
/// with the later ones merged over it, in the entry's project directory and environment, and
/// the files those include. Every path stays inside the desired-state directory.
#[allow(clippy::too_many_arguments)]
fn load_include(
    root: &Path,
    rel: &Path,
    dir: &Path,
    name: &str,
    env: &Env,
    entry: &IncludeEntry,
    chain: &mut Vec<PathBuf>,
    source: &SourceFile,
    diags: &mut Diagnostics,
) -> Vec<LoadedStack> {
    let base = root.join(dir);
    let inside = |raw: &str, what: &str, diags: &mut Diagnostics| match super::paths::resolve_inside(
        root, &base, raw,
    ) {
        Ok(real) => Some(PathBuf::from(crate::desired::build::rel_to(root, &real))),
        Err(e) => {
            let at = if what == "path" {
                entry.at.clone()
            } else {
                format!("{}.{what}", entry.at)
            };
            diags.error(rel, Some(&source.lines), at, e.to_string());
            None
        }
    };
    let mut files = Vec::new();
    for p in &entry.paths {
        files.push(inside(p, "path", diags));
    }
    let Some(files) = files.into_iter().collect::<Option<Vec<PathBuf>>>() else {
        return Vec::new();
    };
    let project_dir = match &entry.project_directory {
        Some(d) => match inside(d, "project_directory", diags) {
            Some(p) => p,
            None => return Vec::new(),
        },
        None => files[0].parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    // compose-go: the entry's env files (later ones win among them) fill the names the
    // including project's environment does not set; without them, the project directory's `.env`.
    let inc_env = if entry.env_file.is_empty() {
        project_env(root, &project_dir, env, diags)
    } else {
        let mut vars: IndexMap<String, String> = IndexMap::new();
        for f in &entry.env_file {
            let Some(p) = inside(f, "env_file", diags) else {
                continue;
            };
            match std::fs::read_to_string(root.join(&p)) {
                Ok(text) => vars.extend(parse_dotenv(&text)),
                Err(e) => diags.error(&p, None, "", format!("cannot read: {e}")),
            }
        }
        env.over(vars)
    };
    let mut parts = Vec::new();
    for f in &files {
        if chain.contains(f) || chain.len() > MAX_INCLUDE_DEPTH {
            diags.error(
                rel,
                Some(&source.lines),
                &entry.at,
                format!(
                    "{:?} is already included on this path (include cycle)",
                    f.display().to_string()
                ),
            );
            return Vec::new();
        }
        chain.push(f.clone());
        let part = load_file(root, f, &project_dir, name, &inc_env, chain, diags);
        chain.pop();
        parts.extend(part);
    }
    if parts.len() != files.len() {
        return Vec::new();
    }
    let mut first = parts.remove(0);
    combine::merge_overrides(&mut first, parts, diags);
    let nested = std::mem::take(&mut first.included);
    std::iter::once(first).chain(nested).collect()
}

/// Each `name: definition` of a top-level section, read alone (typed once `combine` has merged
/// them); an empty section is no definitions, as Compose reads it.
fn each_entry<T: DeserializeOwned + Clone>(
    v: Value,
    section: &str,
    source: &SourceFile,
    diags: &mut Diagnostics,
    out: &mut IndexMap<String, Raw<T>>,
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
        let r = Raw::read(section, &name, v, source, diags);
        out.insert(name, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    fn messages(d: Diagnostics) -> Vec<String> {
        d.into_sorted().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn stack_names_stay_below_stacks() {
        for bad in ["../../x", "/tmp/x", "a/b", "", "a\0b", "Upper", "-x", "."] {
            let hosts = format!("hosts:\n  default: {{stacks: [{bad:?}]}}\n");
            let dir = repo(&[
                ("hosts.yaml", &hosts),
                ("stacks/ok/compose.yaml", "services: {}\n"),
            ]);
            let (loaded, d) = load(dir.path(), "h", &Env::default());
            assert!(loaded.expect("hosts.yaml reads").stacks.is_empty());
            let d = messages(d);
            assert_eq!(d.len(), 1, "{bad:?}: {d:?}");
            assert!(
                d[0].starts_with("hosts.yaml:2: hosts.default: stack name"),
                "{d:?}"
            );
            assert!(d[0].contains("is invalid"), "{d:?}");
        }
        let dir = repo(&[
            ("hosts.yaml", "hosts:\n  default: {stacks: [ok_1-a]}\n"),
            ("stacks/ok_1-a/compose.yaml", "services: {}\n"),
        ]);
        let (loaded, d) = load(dir.path(), "h", &Env::default());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(loaded.expect("loads").stacks.len(), 1);
    }

    #[test]
    fn project_env_is_layered_under_the_desired_state_env() {
        let dir = repo(&[
            ("hosts.yaml", "hosts:\n  default: {stacks: [app]}\n"),
            ("stacks/app/.env", "TAG=from-project\nN=3\nRO=true\n"),
            (
                "stacks/app/compose.yaml",
                "services:\n  a:\n    image: app:${TAG}\n    labels: {n: '${N}', who: '${WHO}'}\n",
            ),
        ]);
        let env = Env::from_pairs([("WHO", "desired-state")]);
        let (loaded, d) = load(dir.path(), "h", &env);
        assert!(d.is_empty(), "{d:?}");
        let s = &loaded.expect("loads").stacks[0].services["a"];
        assert_eq!(s.image.as_deref(), Some("app:from-project"));
        let env = Env::from_pairs([("WHO", "x"), ("TAG", "from-env")]);
        let (loaded, _) = load(dir.path(), "h", &env);
        let s = &loaded.expect("loads").stacks[0].services["a"];
        assert_eq!(
            s.image.as_deref(),
            Some("app:from-env"),
            "the desired-state env wins"
        );
    }

    #[test]
    fn compose_merge_keys_report_the_anchor_lines() {
        let dir = repo(&[
            ("hosts.yaml", "hosts:\n  default: {stacks: [app]}\n"),
            (
                "stacks/app/compose.yaml",
                "x-common: &common\n  restart: [always]\n  image: busybox\nservices:\n  a:\n    <<: *common\n    healthcheck: {retries: lots}\n",
            ),
        ]);
        let (_, d) = load(dir.path(), "h", &Env::default());
        let d = messages(d);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("stacks/app/compose.yaml:2: services.a.restart:"),
            "{d:?}"
        );
        assert!(
            d[1].starts_with("stacks/app/compose.yaml:7: services.a.healthcheck.retries:"),
            "{d:?}"
        );
    }

    #[test]
    fn compose_override_yaml_next_to_the_compose_file_is_merged_over_it() {
        // As `docker compose up` without -f: the first of compose.override.yml/.yaml,
        // docker-compose.override.yml/.yaml merges over compose.yaml (zulip ships its secrets
        // there), with the project's `.env` and paths resolving in the stack directory.
        let dir = repo(&[
            ("hosts.yaml", "hosts:\n  default: {stacks: [app]}\n"),
            ("stacks/app/.env", "TAG=2\n"),
            (
                "stacks/app/compose.yaml",
                "services:\n  a:\n    image: app:1\n    secrets: [pw]\n  b:\n    image: b\n",
            ),
            (
                "stacks/app/compose.override.yaml",
                "name: renamed\nservices:\n  a:\n    image: app:${TAG}\nsecrets:\n  pw:\n    environment: TAG\n",
            ),
            (
                "stacks/app/docker-compose.override.yml",
                "services:\n  a:\n    image: not-this-one\n",
            ),
        ]);
        let (loaded, d) = load(dir.path(), "h", &Env::default());
        assert!(messages(d).iter().all(|m| !m.contains("error")), "loads");
        let stack = &loaded.expect("loads").stacks[0];
        assert_eq!(stack.project, "renamed", "the override's `name:` wins");
        assert_eq!(stack.services["a"].image.as_deref(), Some("app:2"));
        assert_eq!(stack.services["a"].secrets.len(), 1);
        assert!(
            stack.secrets.contains_key("pw"),
            "secret declared by the override"
        );
        assert_eq!(stack.services["b"].image.as_deref(), Some("b"));
    }
}
