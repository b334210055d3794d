//! Value → typed value, reporting every problem at once: every unknown key (with the nearest
//! supported key) and every type error, each with its path and line.
//!
//! serde stops at the first type error. To find the next one, the offending node is removed
//! and the value deserialised again (bounded by `MAX_ROUNDS`); a "missing field" that only the
//! removal caused is not reported. List items removed this way shift the later items' indices,
//! so paths are mapped back to the file's own indices before they are reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::lines;
use super::SourceFile;
use crate::diag::Diagnostics;

/// Type errors reported per value at most (each costs one more deserialisation).
const MAX_ROUNDS: usize = 32;

/// Deserialise `value` (found at `path` in `file`) into `T`. `supported` names the keys
/// allowed where an unknown key was found (its full path is passed). `x-*` keys are
/// extension fields and never unknown. `None` when any type error was found.
pub fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &str,
    file: &SourceFile,
    supported: &dyn Fn(&str) -> &'static [&'static str],
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut value = value;
    untag(&mut value, path, file, diags);
    let mut unknown = BTreeSet::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut removed = Removed::default();
    for _ in 0..MAX_ROUNDS {
        let mut on_ignored = |p: serde_ignored::Path<'_>| {
            unknown.insert(removed.original(&ignored_segments(&p)));
        };
        let ignored = serde_ignored::Deserializer::new(value.clone(), &mut on_ignored);
        let err = match serde_path_to_error::deserialize::<_, T>(ignored) {
            Ok(v) if errors.is_empty() => {
                report_unknown(&unknown, path, file, supported, diags);
                return Some(v);
            }
            Ok(_) => break,
            Err(e) => e,
        };
        let segs: Vec<Seg> = err.path().iter().filter_map(Seg::from_serde).collect();
        let message = err.into_inner().to_string();
        let at = removed.original(&segs);
        if removed.caused(&at, &message) {
            break;
        }
        errors.push((at, message));
        if segs.is_empty() || !removed.remove(&mut value, &segs) {
            break;
        }
    }
    report_unknown(&unknown, path, file, supported, diags);
    for (at, message) in errors {
        let full = if at.is_empty() {
            path.to_string()
        } else {
            lines::join(path, &at)
        };
        diags.error(&file.rel, Some(&file.lines), full, message);
    }
    None
}

/// Compose's merge tags reach here only outside a compose file (`desired::compose::merge`
/// removes them there): an error at each, the value read as if untagged.
fn untag(v: &mut Value, path: &str, file: &SourceFile, diags: &mut Diagnostics) {
    match v {
        Value::Tagged(t) => {
            diags.error(
                &file.rel,
                Some(&file.lines),
                path,
                format!(
                    "tag {} only means something in a compose file, where definitions are merged",
                    t.tag
                ),
            );
            *v = std::mem::take(&mut t.value);
            untag(v, path, file, diags);
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let at = lines::join(path, k.as_str().unwrap_or_default());
                untag(item, &at, file, diags);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                untag(item, &lines::index(path, i), file, diags);
            }
        }
        _ => {}
    }
}

fn report_unknown(
    unknown: &BTreeSet<String>,
    path: &str,
    file: &SourceFile,
    supported: &dyn Fn(&str) -> &'static [&'static str],
    diags: &mut Diagnostics,
) {
    for rel in unknown {
        let full = lines::join(path, rel);
        let key = rel.rsplit(['.', '[']).next().unwrap_or(rel);
        if key.starts_with("x-") {
            continue;
        }
        diags.error(
            &file.rel,
            Some(&file.lines),
            &full,
            unknown_key_message(key, supported(&full)),
        );
    }
}

/// `unknown key "imgae"; did you mean "image"? (supported: ...)`.
pub fn unknown_key_message(key: &str, keys: &[&str]) -> String {
    let mut m = format!("unknown key {key:?}");
    if let Some(near) = nearest(key, keys) {
        m.push_str(&format!("; did you mean {near:?}?"));
    }
    if !keys.is_empty() {
        m.push_str(&format!(" (supported: {})", keys.join(", ")));
    }
    m
}

/// The supported key closest to `key`, when it is close enough to be a typo. Never `key`
/// itself: a listed key reported as unknown means the list and the reader disagree (as
/// `include` once did: listed before the loader read it), and "did you mean" would hide that.
pub fn nearest<'a>(key: &str, keys: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(1);
    keys.iter()
        .filter(|k| **k != key)
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance where swapping two neighbours is one edit (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Item(usize),
}

impl Seg {
    fn from_serde(s: &Segment) -> Option<Self> {
        match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Item(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        }
    }
}

fn ignored_segments(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path as P;
    match p {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = ignored_segments(parent);
            v.push(Seg::Item(*index));
            v
        }
        P::Map { parent, key } => {
            let mut v = ignored_segments(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_segments(parent)
        }
    }
}

/// What was taken out of the value so far, in the file's own coordinates.
#[derive(Default)]
struct Removed {
    /// Per list (its path in the file), the file's indices of the items removed.
    items: BTreeMap<String, Vec<usize>>,
    /// Paths of removed mapping entries.
    keys: BTreeSet<String>,
}

impl Removed {
    /// The path of `segs` (current value's indices) with the file's indices.
    fn original(&self, segs: &[Seg]) -> String {
        let mut p = String::new();
        for s in segs {
            p = match s {
                Seg::Key(k) => lines::join(&p, k),
                Seg::Item(i) => {
                    let mut orig = *i;
                    if let Some(gone) = self.items.get(&p) {
                        for r in gone {
                            if *r <= orig {
                                orig += 1;
                            }
                        }
                    }
                    lines::index(&p, orig)
                }
            };
        }
        p
    }

    /// A "missing field" for a field this removal took out is not the user's problem.
    fn caused(&self, at: &str, message: &str) -> bool {
        let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        else {
            return false;
        };
        self.keys.contains(&lines::join(at, field))
    }

    /// Take the node at `segs` out of `value`; false when it is not there.
    fn remove(&mut self, value: &mut Value, segs: &[Seg]) -> bool {
        let (last, parents) = segs.split_last().expect("caller checks for the root");
        let mut v = value;
        for s in parents {
            let next = match (s, v) {
                (Seg::Key(k), Value::Mapping(m)) => m.iter_mut().find(|(mk, _)| key_is(mk, k)),
                (Seg::Item(i), Value::Sequence(items)) => {
                    items.get_mut(*i).map(|x| (&Value::Null, x))
                }
                _ => None,
            };
            let Some((_, child)) = next else {
                return false;
            };
            v = child;
        }
        let parent = self.original(parents);
        match (last, v) {
            (Seg::Key(k), Value::Mapping(m)) => {
                let Some(found) = m.keys().find(|mk| key_is(mk, k)).cloned() else {
                    return false;
                };
                m.remove(&found);
                self.keys.insert(lines::join(&parent, k));
                true
            }
            (Seg::Item(i), Value::Sequence(items)) if *i < items.len() => {
                let orig = self.original(segs);
                items.remove(*i);
                let idx = orig
                    .rsplit('[')
                    .next()
                    .and_then(|t| t.trim_end_matches(']').parse().ok())
                    .unwrap_or(*i);
                let gone = self.items.entry(parent).or_default();
                gone.push(idx);
                gone.sort_unstable();
                true
            }
            _ => false,
        }
    }
}

fn key_is(k: &Value, name: &str) -> bool {
    match k {
        Value::String(s) => s == name,
        Value::Number(n) => n.to_string() == name,
        Value::Bool(b) => b.to_string() == name,
        _ => false,
    }
}
