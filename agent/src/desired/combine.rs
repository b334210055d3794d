//! One service written in several places becomes one definition, by Compose's merge rules
//! (`compose::merge`): a main file's keys over a service an `include:`d file defines (compose-go
//! merges the two; wger's compose file adds `shm_size` to the `db` its `services/postgres.yaml`
//! defines), the override files of one `include` entry (`path: [base.yaml, override.yaml]`),
//! and `extends` (same file, or `file:` inside the desired-state directory; cycles reported).
//!
//! Each written definition is first read alone against its own file (`RawService::typed`), so
//! every problem keeps its file and line; the merged value is typed again at the end and only
//! when every part read cleanly, so a problem is never reported twice.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::compose::merge::{self, rebase_service};
use super::compose::{self, Service};
use super::load::{read_compose, LoadedStack, SourceFile};
use crate::diag::Diagnostics;
use crate::input::interpolate::Env;
use crate::input::{deserialize_at, lines};

/// How deep `extends` may chain (a cycle is refused before that).
const MAX_EXTENDS_DEPTH: usize = 16;

/// One service as one file writes it, and what became of it.
#[derive(Debug, Clone)]
pub struct RawService {
    /// As written (`!reset`/`!override` kept: they act when this is merged over a base), or
    /// the merged value once something was merged under it.
    pub value: Value,
    /// The definition as written, typed alone; `None` after an error (already reported).
    pub typed: Option<Service>,
    /// Every definition that went into `value` read without an error.
    pub ok: bool,
    /// Something was merged under it: `value` must be typed again.
    pub merged: bool,
}

impl RawService {
    /// Read `value` (at `services.<name>` of `source`) alone, reporting its problems.
    pub fn read(name: &str, value: Value, source: &SourceFile, diags: &mut Diagnostics) -> Self {
        let value = if value.is_null() {
            Value::Mapping(Default::default())
        } else {
            value
        };
        let errors = error_count(diags);
        let typed = deserialize_at::<Service>(
            merge::strip(value.clone()).unwrap_or_default(),
            &lines::join("services", name),
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
}

fn error_count(d: &Diagnostics) -> usize {
    d.iter().filter(|x| x.is_error()).count()
}

/// Merge `base` (written in `base_dir`) under `over`, which stays where it is (`over_dir`).
fn merge_under(
    over: &mut RawService,
    base: &RawService,
    base_dir: &Path,
    over_dir: &Path,
) -> Result<(), merge::MergeError> {
    let mut b = merge::strip(base.value.clone()).unwrap_or_default();
    rebase_service(&mut b, base_dir, over_dir);
    over.value = merge::merge_entry("services", b, std::mem::take(&mut over.value))?;
    over.ok &= base.ok;
    over.merged = true;
    Ok(())
}

fn report_merge(e: merge::MergeError, source: &SourceFile, name: &str, d: &mut Diagnostics) {
    let path = match e.path().strip_prefix("services.*") {
        Some(rest) => format!("services.{name}{rest}"),
        None => lines::join("services", name),
    };
    d.error(&source.rel, Some(&source.lines), path, e.to_string());
}

/// A service the stack's file and its included files both define: the first holder (the
/// including file, then the earlier include) keeps it, with the later definition merged
/// under it, as compose-go's `importResources` merges an included resource under the model's.
pub fn merge_included(stack: &mut LoadedStack, diags: &mut Diagnostics) {
    let mut parts = std::mem::take(&mut stack.included);
    for i in 0..parts.len() {
        let names: Vec<String> = parts[i].raw.keys().cloned().collect();
        let later_dir = parts[i].dir.clone();
        for name in names {
            let holder = if stack.raw.contains_key(&name) {
                None
            } else if let Some(j) = parts[..i].iter().position(|p| p.raw.contains_key(&name)) {
                Some(j)
            } else {
                continue;
            };
            let Some(later) = parts[i].raw.shift_remove(&name) else {
                continue;
            };
            let (dir, over, part) = match holder {
                None => (&stack.dir, stack.raw.get_mut(&name), None),
                Some(j) => {
                    let p = &mut parts[j];
                    (&p.dir, p.raw.get_mut(&name), Some(j))
                }
            };
            let Some(over) = over else { continue };
            let dir = dir.clone();
            if let Err(e) = merge_under(over, &later, &later_dir, &dir) {
                let at = part.map_or(&stack.source, |j| &parts[j].source);
                report_merge(e, at, &name, diags);
            }
        }
    }
    // Networks, volumes, secrets and configs: the first holder's definition is used whole
    // (compose merges their keys too; a stack that relies on that is rare).
    for i in 0..parts.len() {
        let (before, rest) = parts.split_at_mut(i);
        let part = &mut rest[0];
        let held = |f: &dyn Fn(&LoadedStack) -> bool| f(stack) || before.iter().any(f);
        part.networks
            .retain(|k, _| !held(&|p: &LoadedStack| p.networks.contains_key(k)));
        part.volumes
            .retain(|k, _| !held(&|p: &LoadedStack| p.volumes.contains_key(k)));
        part.secrets
            .retain(|k, _| !held(&|p: &LoadedStack| p.secrets.contains_key(k)));
        part.configs
            .retain(|k, _| !held(&|p: &LoadedStack| p.configs.contains_key(k)));
    }
    stack.included = parts;
}

/// The override files of one `include` entry (`path: [base, override...]`) merged into the
/// base file's part, in order, as compose merges several `-f` files: the later file wins.
pub fn merge_overrides(
    base: &mut LoadedStack,
    overrides: Vec<LoadedStack>,
    diags: &mut Diagnostics,
) {
    for o in overrides {
        for (name, mut over) in o.raw {
            match base.raw.get_mut(&name) {
                Some(b) => {
                    // Override files resolve paths in the base file's project directory; the
                    // service keeps its place in the file's order.
                    if let Err(e) = merge_under(&mut over, b, &base.dir, &base.dir) {
                        report_merge(e, &o.source, &name, diags);
                    }
                    *b = over;
                }
                None => {
                    base.raw.insert(name, over);
                }
            }
        }
        base.networks.extend(o.networks);
        base.volumes.extend(o.volumes);
        base.secrets.extend(o.secrets);
        base.configs.extend(o.configs);
        base.included.extend(o.included);
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
        if let Err(e) = merge_under(entry, &base, &base_dir, &dir) {
            let (source, _) = self.place(file);
            report_merge(e, &source, name, self.diags);
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
                    let r = RawService::read(&n, v.clone(), &source, self.diags);
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

/// Every service of every part typed: as read alone, or (when something was merged under
/// it) the merged value typed again, its problems reported at the service in the file that
/// holds it.
pub fn finish(stack: &mut LoadedStack, diags: &mut Diagnostics) {
    type_part(stack, diags);
    for part in &mut stack.included {
        type_part(part, diags);
    }
}

fn type_part(part: &mut LoadedStack, diags: &mut Diagnostics) {
    for (name, raw) in &part.raw {
        let typed = if !raw.merged {
            raw.typed.clone()
        } else if raw.ok {
            let mut scratch = Diagnostics::default();
            let t = deserialize_at::<Service>(
                raw.value.clone(),
                &lines::join("services", name),
                &part.source,
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
        } else {
            None
        };
        if let Some(t) = typed {
            part.services.insert(name.clone(), t);
        }
    }
}
