//! Server-side apply as the API server does it, for the stand-in: every field manager owns the
//! leaf fields it applied (lists are atomic, as `+listType=atomic`); applying a value another
//! manager owns with a different value is a conflict (409) unless forced, which moves the
//! field; equal values are shared; a field its manager stops applying is removed unless
//! another manager still owns it. Ownership is rendered as `metadata.managedFields`
//! (`FieldsV1`), and an apply that changes nothing changes nothing (same resourceVersion).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

pub type Path = Vec<String>;
/// Manager → the leaf paths it owns.
pub type Managed = BTreeMap<String, BTreeSet<Path>>;

/// Set by the server, never owned by an applier.
fn server_owned(p: &[String]) -> bool {
    matches!(
        p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["apiVersion"]
            | ["kind"]
            | ["status", ..]
            | [
                "metadata",
                "name"
                    | "namespace"
                    | "resourceVersion"
                    | "generation"
                    | "managedFields"
                    | "uid"
                    | "creationTimestamp"
            ]
    )
}

/// Every leaf of `v` (scalars, arrays, empty objects) with its path.
pub fn leaves(v: &Value) -> Vec<(Path, Value)> {
    fn walk(v: &Value, at: &mut Path, out: &mut Vec<(Path, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    at.push(k.clone());
                    walk(c, at, out);
                    at.pop();
                }
            }
            _ => out.push((at.clone(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out.retain(|(p, _)| !server_owned(p));
    out
}

fn get<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    p.iter().try_fold(v, |v, k| v.get(k))
}

fn set(v: &mut Value, p: &[String], value: Value) {
    let mut cur = v;
    for k in &p[..p.len() - 1] {
        if !cur.get(k).is_some_and(Value::is_object) {
            cur[k.as_str()] = json!({});
        }
        cur = &mut cur[k.as_str()];
    }
    cur[p[p.len() - 1].as_str()] = value;
}

fn remove(v: &mut Value, p: &[String]) {
    let Some((last, parents)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// (manager, field) pairs that block an unforced apply.
pub struct Conflicts(pub Vec<(String, String)>);

/// Apply `body` as `manager` onto `current` (None: create).
pub fn apply(
    current: Option<&Value>,
    managed: &Managed,
    body: &Value,
    manager: &str,
    force: bool,
) -> Result<(Value, Managed), Conflicts> {
    let base = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": body["metadata"]["name"]}})
    });
    let mut managed = managed.clone();
    let wanted = leaves(body);
    let mut conflicts = Vec::new();
    for (p, v) in &wanted {
        for (m, owned) in &managed {
            if m != manager && owned.contains(p) && get(&base, p) != Some(v) {
                conflicts.push((m.clone(), format!(".{}", p.join("."))));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    for (m, field) in &conflicts {
        let p: Path = field[1..].split('.').map(str::to_string).collect();
        if let Some(owned) = managed.get_mut(m) {
            owned.remove(&p);
        }
    }
    let mut obj = base;
    if let Some(ns) = body["metadata"].get("namespace") {
        obj["metadata"]["namespace"] = ns.clone();
    }
    let new: BTreeSet<Path> = wanted.iter().map(|(p, _)| p.clone()).collect();
    let dropped: Vec<Path> = managed
        .get(manager)
        .map(|old| old.difference(&new).cloned().collect())
        .unwrap_or_default();
    for p in dropped {
        if !managed.iter().any(|(m, o)| m != manager && o.contains(&p)) {
            remove(&mut obj, &p);
        }
    }
    for (p, v) in wanted {
        set(&mut obj, &p, v);
    }
    managed.insert(manager.to_string(), new);
    managed.retain(|_, owned| !owned.is_empty());
    Ok((obj, managed))
}

/// `metadata.managedFields` as the API server renders it.
pub fn render(managed: &Managed, api_version: &Value) -> Value {
    let entries: Vec<Value> = managed
        .iter()
        .map(|(m, owned)| {
            let mut fields = Map::new();
            for p in owned {
                let mut cur = &mut fields;
                for k in p {
                    cur = cur
                        .entry(format!("f:{k}"))
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .expect("built as objects");
                }
            }
            json!({"manager": m, "operation": "Apply", "apiVersion": api_version,
                   "fieldsType": "FieldsV1", "fieldsV1": fields})
        })
        .collect();
    Value::Array(entries)
}
