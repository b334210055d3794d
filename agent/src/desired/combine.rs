//! One service (or top-level network, volume, secret, config) written in several places
//! becomes one definition, by Compose's merge rules (`compose::merge`): a main file's keys over
//! a definition an `include:`d file writes (compose-go merges the two; wger's compose file adds
//! `shm_size` to the `db` its `services/postgres.yaml` defines), the override files of one
//! `include` entry (`path: [base.yaml, override.yaml]`), and, for services, `extends` (same
//! file, or `file:` inside the desired-state directory; cycles reported).
//!
//! Each written definition is first read alone against its own file (`RawService::typed`), so
//! every problem keeps its file and line; the merged value is typed again at the end and only
//! when every part read cleanly, so a problem is never reported twice.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::compose::merge::{self, rebase_service};
use super::compose::{self, FileDef, NetworkDef, Service, VolumeDef};
use super::load::{read_compose, LoadedStack, SourceFile};
use crate::diag::Diagnostics;
use crate::input::interpolate::Env;
use crate::input::{deserialize_at, lines};

/// How deep `extends` may chain (a cycle is refused before that).
const MAX_EXTENDS_DEPTH: usize = 16;

/// One definition (a service, network, volume, secret or config) as one file writes it, and
/// what became of it.
#[derive(Debug, Clone)]
pub struct Raw<T> {
    /// As written (`!reset`/`!override` kept: they act when this is merged over a base), or
    /// the merged value once something was merged under it.
    pub value: Value,
    /// The definition as written, typed alone; `None` after an error (already reported).
    pub typed: Option<T>,
    /// Every definition that went into `value` read without an error.
    pub ok: bool,
    /// Something was merged under it: `value` must be typed again.
    pub merged: bool,
}

pub type RawService = Raw<Service>;

impl<T: DeserializeOwned + Clone> Raw<T> {
    /// Read `value` (at `<section>.<name>` of `source`) alone, reporting its problems; a bare
    /// `name:` is the empty definition, as Compose reads it.
    pub fn read(
        section: &str,
        name: &str,
        value: Value,
        source: &SourceFile,
        diags: &mut Diagnostics,
    ) -> Self {
        let value = if value.is_null() {
            Value::Mapping(Default::default())
        } else {
            value
        };
        let errors = error_count(diags);
        let typed = deserialize_at::<T>(
            merge::strip(value.clone()).unwrap_or_default(),
            &lines::join(section, name),
            source,
            &compose::supported_keys_at,
            diags,
        );
        let ok = typed.is_some() && error_count(diags) == errors;
        Self {
            value,
            typed,
            ok,
            merged: false,
        }
    }

    /// The definition to use: as read alone, or (when something was merged under it) the
    /// merged value typed again, its problems reported at `<section>.<name>` of `source`.
    fn finish(
        &self,
        section: &str,
        name: &str,
        source: &SourceFile,
        diags: &mut Diagnostics,
    ) -> Option<T> {
        if !self.merged {
            return self.typed.clone();
        }
        if !self.ok {
            return None;
        }
        let mut scratch = Diagnostics::default();
        let t = deserialize_at::<T>(
            self.value.clone(),
            &lines::join(section, name),
            source,
            &compose::supported_keys_at,
            &mut scratch,
        );
        for mut d in scratch.into_sorted() {
            d.message = format!(
                "{} (in the definition merged from extends/include)",
                d.message
            );
            diags.push(d);
        }
        t
    }
}

/// A stack file's top-level `networks`, `volumes`, `secrets` and `configs` as written, until
/// `combine` has merged and typed them.
#[derive(Debug, Clone, Default)]
pub struct RawTop {
    pub networks: IndexMap<String, Raw<NetworkDef>>,
    pub volumes: IndexMap<String, Raw<VolumeDef>>,
    pub secrets: IndexMap<String, Raw<FileDef>>,
    pub configs: IndexMap<String, Raw<FileDef>>,
}

fn error_count(d: &Diagnostics) -> usize {
    d.iter().filter(|x| x.is_error()).count()
}

/// Merge `base` (written in `base_dir`) under `over`, a definition of `section` that stays
/// where it is (`over_dir`).
fn merge_under<T>(
    section: &str,
    over: &mut Raw<T>,
    base: &Raw<T>,
    base_dir: &Path,
    over_dir: &Path,
) -> Result<(), merge::MergeError> {
    let mut b = merge::strip(base.value.clone()).unwrap_or_default();
    rebase(section, &mut b, base_dir, over_dir);
    over.value = merge::merge_entry(section, b, std::mem::take(&mut over.value))?;
    over.ok &= base.ok;
    over.merged = true;
    Ok(())
}

fn report_merge(
    e: merge::MergeError,
    source: &SourceFile,
    section: &str,
    name: &str,
    d: &mut Diagnostics,
) {
    let at = lines::join(section, name);
    let path = match e.path().strip_prefix(&format!("{section}.*")) {
        Some(rest) => format!("{at}{rest}"),
        None => at,
    };
    d.error(&source.rel, Some(&source.lines), path, e.to_string());
}

/// A section's entries as `combine` reads them from a part of the stack.
type Section<T> = fn(&mut LoadedStack) -> &mut IndexMap<String, Raw<T>>;

/// A definition the stack's file and its included files both write: the first holder (the
/// including file, then the earlier include) keeps it, with the later definition merged
/// under it key by key, as compose-go's `importResources` merges an included resource under
/// the model's — services, networks, volumes, secrets and configs alike.
pub fn merge_included(stack: &mut LoadedStack, diags: &mut Diagnostics) {
    let mut parts = std::mem::take(&mut stack.included);
    include_section(stack, &mut parts, "services", |p| &mut p.raw, diags);
    include_section(
        stack,
        &mut parts,
        "networks",
        |p| &mut p.top.networks,
        diags,
    );
    include_section(stack, &mut parts, "volumes", |p| &mut p.top.volumes, diags);
    include_section(stack, &mut parts, "secrets", |p| &mut p.top.secrets, diags);
    include_section(stack, &mut parts, "configs", |p| &mut p.top.configs, diags);
    stack.included = parts;
}

fn include_section<T>(
    stack: &mut LoadedStack,
    parts: &mut [LoadedStack],
    section: &str,
    get: Section<T>,
    diags: &mut Diagnostics,
) {
    for i in 0..parts.len() {
        let names: Vec<String> = get(&mut parts[i]).keys().cloned().collect();
        let later_dir = parts[i].dir.clone();
        for name in names {
            let holder = if get(stack).contains_key(&name) {
                None
            } else if let Some(j) = (0..i).find(|&j| get(&mut parts[j]).contains_key(&name)) {
                Some(j)
            } else {
                continue;
            };
            let Some(later) = get(&mut parts[i]).shift_remove(&name) else {
                continue;
            };
            let held = match holder {
                None => &mut *stack,
                Some(j) => &mut parts[j],
            };
            let dir = held.dir.clone();
            let Some(over) = get(held).get_mut(&name) else {
                continue;
            };
            if let Err(e) = merge_under(section, over, &later, &later_dir, &dir) {
                report_merge(e, &held.source, section, &name, diags);
            }
        }
    }
}

/// The override files of one `include` entry (`path: [base, override...]`) merged into the
/// base file's part, in order, as compose merges several `-f` files: the later file wins,
/// key by key.
pub fn merge_overrides(
    base: &mut LoadedStack,
    overrides: Vec<LoadedStack>,
    diags: &mut Diagnostics,
) {
    for mut o in overrides {
        override_section(base, &mut o, "services", |p| &mut p.raw, diags);
        override_section(base, &mut o, "networks", |p| &mut p.top.networks, diags);
        override_section(base, &mut o, "volumes", |p| &mut p.top.volumes, diags);
        override_section(base, &mut o, "secrets", |p| &mut p.top.secrets, diags);
        override_section(base, &mut o, "configs", |p| &mut p.top.configs, diags);
        base.included.extend(o.included);
    }
}

fn override_section<T>(
    base: &mut LoadedStack,
    o: &mut LoadedStack,
    section: &str,
    get: Section<T>,
    diags: &mut Diagnostics,
) {
    let dir = base.dir.clone();
    for (name, mut over) in std::mem::take(get(o)) {
        match get(base).get_mut(&name) {
            Some(b) => {
                // Override files resolve paths in the base file's project directory; the
                // definition keeps its place in the file's order.
                if let Err(e) = merge_under(section, &mut over, b, &dir, &dir) {
                    report_merge(e, &o.source, section, &name, diags);
                }
                *b = over;
            }
            None => {
                get(base).insert(name, over);
            }
        }
    }
}

/// Relative paths of a definition of `section` moved from directory `from` to `to`.
fn rebase(section: &str, v: &mut Value, from: &Path, to: &Path) {
    match section {
        "services" => rebase_service(v, from, to),
        "secrets" | "configs" => merge::rebase_file_def(v, from, to),
        _ => {}
    }
}

/// Where a service definition is read from while `extends` is resolved: the stack file being
/// loaded (`None`) or another file named by `extends.file` (its path below the root).
type FileKey = Option<PathBuf>;

/// A file read only for `extends.file`.
struct OtherFile {
    source: SourceFile,
    dir: PathBuf,
    raw: IndexMap<String, RawService>,
}

/// Apply `extends` to every service `stack`'s own file defines (included files applied theirs
/// when they were loaded): the base, itself extended first, merged under the service.
pub fn apply_extends(root: &Path, stack: &mut LoadedStack, env: &Env, diags: &mut Diagnostics) {
    let mut others = IndexMap::new();
    let names: Vec<String> = stack.raw.keys().cloned().collect();
    for name in names {
        let mut ex = Extender {
            root,
            stack: &mut *stack,
            others: &mut others,
            env,
            diags: &mut *diags,
        };
        ex.resolve(&None, &name, &mut Vec::new());
    }
}

struct Extender<'a> {
    root: &'a Path,
    stack: &'a mut LoadedStack,
    others: &'a mut IndexMap<PathBuf, OtherFile>,
    env: &'a Env,
    diags: &'a mut Diagnostics,
}

impl Extender<'_> {
    fn raw(&mut self, file: &FileKey) -> Option<&mut IndexMap<String, RawService>> {
        match file {
            None => Some(&mut self.stack.raw),
            Some(f) => self.others.get_mut(f).map(|o| &mut o.raw),
        }
    }

    fn place(&self, file: &FileKey) -> (SourceFile, PathBuf) {
        match file.as_ref().and_then(|f| self.others.get(f)) {
            Some(o) => (o.source.clone(), o.dir.clone()),
            None => (self.stack.source.clone(), self.stack.dir.clone()),
        }
    }

    fn error(&mut self, file: &FileKey, path: String, message: String) {
        let (source, _) = self.place(file);
        self.diags
            .error(&source.rel, Some(&source.lines), path, message);
    }

    /// The definition of `name` in `file` with its `extends` applied, and its directory.
    fn resolve(
        &mut self,
        file: &FileKey,
        name: &str,
        chain: &mut Vec<(FileKey, String)>,
    ) -> Option<(RawService, PathBuf)> {
        let entry = self.raw(file)?.get(name)?.clone();
        let (_, dir) = self.place(file);
        let Some((base_name, base_file)) = extends_of(&entry.value) else {
            return Some((entry, dir));
        };
        let at = format!("services.{name}.extends");
        let here = (file.clone(), name.to_string());
        if chain.contains(&here) || chain.len() > MAX_EXTENDS_DEPTH {
            let mut names: Vec<&str> = chain.iter().map(|(_, n)| n.as_str()).collect();
            names.push(name);
            self.error(file, at, format!("extends cycle: {}", names.join(" → ")));
            return None;
        }
        chain.push(here);
        let base = match &base_file {
            Some(f) => self.other_file(file, &at, f).and_then(|key| {
                self.resolve_or_report(file, &at, &Some(key), &base_name, f, chain)
            }),
            None => match self.resolve(file, &base_name, chain) {
                Some(b) => Some(b),
                None if self.raw(file).is_some_and(|r| r.contains_key(&base_name)) => None,
                None => self.included_base(file, &at, &base_name),
            },
        };
        chain.pop();
        let (base, base_dir) = base?;
        let raw = self.raw(file)?;
        let entry = raw.get_mut(name)?;
        if let Value::Mapping(m) = &mut entry.value {
            m.remove("extends");
        }
        if let Err(e) = merge_under("services", entry, &base, &base_dir, &dir) {
            let (source, _) = self.place(file);
            report_merge(e, &source, "services", name, self.diags);
        }
        let done = self.raw(file)?.get(name)?.clone();
        Some((done, dir))
    }

    fn resolve_or_report(
        &mut self,
        file: &FileKey,
        at: &str,
        key: &FileKey,
        base: &str,
        written: &str,
        chain: &mut Vec<(FileKey, String)>,
    ) -> Option<(RawService, PathBuf)> {
        if self.raw(key).is_some_and(|r| r.contains_key(base)) {
            return self.resolve(key, base, chain);
        }
        self.error(
            file,
            at.to_string(),
            format!("service {base:?} is not defined in {written:?}"),
        );
        None
    }

    /// A base the stack's file does not define may come from one of its included files.
    fn included_base(
        &mut self,
        file: &FileKey,
        at: &str,
        base: &str,
    ) -> Option<(RawService, PathBuf)> {
        if file.is_none() {
            for part in self.stack.parts().into_iter().skip(1) {
                if let Some(b) = part.raw.get(base) {
                    return Some((b.clone(), part.dir.clone()));
                }
            }
        }
        self.error(
            file,
            at.to_string(),
            format!("service {base:?} is not defined in this file"),
        );
        None
    }

    /// Read (once) the file `extends.file` names, confined to the desired-state directory.
    fn other_file(&mut self, from: &FileKey, at: &str, written: &str) -> Option<PathBuf> {
        let (_, dir) = self.place(from);
        let real = match super::paths::resolve_inside(self.root, &dir, written) {
            Ok(r) => r,
            Err(e) => {
                self.error(from, at.to_string(), e.to_string());
                return None;
            }
        };
        let rel = PathBuf::from(super::build::rel_to(self.root, &real));
        if !self.others.contains_key(&rel) {
            let (top, source) = read_compose(self.root, &rel, self.env, self.diags)?;
            let mut raw = IndexMap::new();
            if let Some(Value::Mapping(services)) = top.get("services") {
                for (k, v) in services {
                    let n = k.as_str().unwrap_or_default().to_string();
                    let r = RawService::read("services", &n, v.clone(), &source, self.diags);
                    raw.insert(n, r);
                }
            }
            let dir = self
                .root
                .join(rel.parent().unwrap_or_else(|| Path::new("")));
            self.others
                .insert(rel.clone(), OtherFile { source, dir, raw });
        }
        Some(rel)
    }
}

/// `extends: name` or `extends: {service: name, file: path}` of a service as written.
fn extends_of(v: &Value) -> Option<(String, Option<String>)> {
    match merge::strip(v.get("extends")?.clone())? {
        Value::String(s) => Some((s, None)),
        Value::Mapping(m) => Some((
            m.get("service")?.as_str()?.to_string(),
            m.get("file").and_then(Value::as_str).map(str::to_string),
        )),
        _ => None,
    }
}

/// Every definition of every part typed: as read alone, or (when something was merged under
/// it) the merged value typed again, its problems reported at the definition in the file that
/// holds it.
pub fn finish(stack: &mut LoadedStack, diags: &mut Diagnostics) {
    type_part(stack, diags);
    for part in &mut stack.included {
        type_part(part, diags);
    }
}

fn type_part(part: &mut LoadedStack, diags: &mut Diagnostics) {
    let src = &part.source;
    type_section("services", &part.raw, &mut part.services, src, diags);
    let top = &part.top;
    type_section("networks", &top.networks, &mut part.networks, src, diags);
    type_section("volumes", &top.volumes, &mut part.volumes, src, diags);
    type_section("secrets", &top.secrets, &mut part.secrets, src, diags);
    type_section("configs", &top.configs, &mut part.configs, src, diags);
}

fn type_section<T: DeserializeOwned + Clone>(
    section: &str,
    raw: &IndexMap<String, Raw<T>>,
    out: &mut IndexMap<String, T>,
    source: &SourceFile,
    diags: &mut Diagnostics,
) {
    for (name, r) in raw {
        if let Some(t) = r.finish(section, name, source, diags) {
            out.insert(name.clone(), t);
        }
    }
}
