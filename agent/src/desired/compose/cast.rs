//! Quoted numbers and booleans where Compose reads them as numbers and booleans.
//!
//! compose-go casts the string found at these paths (quoted, or the result of `${VAR}`) to
//! the type the key takes (`loader/interpolate.go`, `interpolateTypeCastMapping`), so
//! `retries: "3"`, `cpus: "0.5"` and `privileged: "true"` load. The same table here, applied
//! to a compose file's value before it is typed; a string that does not read as the type is
//! an error at its path and line, as compose's "failed to cast to expected type" is.

use serde_yaml::Value;

use crate::input::lines;

#[derive(Clone, Copy)]
enum To {
    Int,
    Float,
    Bool,
}

/// `*` is any mapping key, `[]` any list item.
const CASTS: &[(&[&str], To)] = &[
    (&["services", "*", "cpu_count"], To::Int),
    // compose-go casts to a float; the Engine takes an integer percentage.
    (&["services", "*", "cpu_percent"], To::Int),
    (&["services", "*", "cpu_period"], To::Int),
    (&["services", "*", "cpu_quota"], To::Int),
    (&["services", "*", "cpu_rt_period"], To::Int),
    (&["services", "*", "cpu_rt_runtime"], To::Int),
    (&["services", "*", "cpus"], To::Float),
    (&["services", "*", "cpu_shares"], To::Int),
    (&["services", "*", "init"], To::Bool),
    (&["services", "*", "depends_on", "*", "required"], To::Bool),
    (&["services", "*", "depends_on", "*", "restart"], To::Bool),
    (&["services", "*", "deploy", "replicas"], To::Int),
    (
        &["services", "*", "deploy", "restart_policy", "max_attempts"],
        To::Int,
    ),
    (&["services", "*", "healthcheck", "retries"], To::Int),
    (&["services", "*", "healthcheck", "disable"], To::Bool),
    (&["services", "*", "oom_kill_disable"], To::Bool),
    (&["services", "*", "oom_score_adj"], To::Int),
    (&["services", "*", "pids_limit"], To::Int),
    (&["services", "*", "ports", "[]", "target"], To::Int),
    (&["services", "*", "privileged"], To::Bool),
    (&["services", "*", "read_only"], To::Bool),
    (&["services", "*", "scale"], To::Int),
    (&["services", "*", "stdin_open"], To::Bool),
    (&["services", "*", "tty"], To::Bool),
    (&["services", "*", "ulimits", "*"], To::Int),
    (&["services", "*", "ulimits", "*", "hard"], To::Int),
    (&["services", "*", "ulimits", "*", "soft"], To::Int),
    (&["services", "*", "volumes", "[]", "read_only"], To::Bool),
    (
        &["services", "*", "volumes", "[]", "volume", "nocopy"],
        To::Bool,
    ),
    (&["networks", "*", "external"], To::Bool),
    (&["networks", "*", "internal"], To::Bool),
    (&["networks", "*", "attachable"], To::Bool),
    (&["networks", "*", "enable_ipv6"], To::Bool),
    (&["volumes", "*", "external"], To::Bool),
    (&["secrets", "*", "external"], To::Bool),
    (&["configs", "*", "external"], To::Bool),
];

/// A cast that failed or needed a warning: (path, message, is_error).
pub type CastProblem = (String, String, bool);

/// Cast every string at a path of the table in a compose file's top-level value.
pub fn cast_compose(top: &mut Value) -> Vec<CastProblem> {
    let mut problems = Vec::new();
    for (pattern, to) in CASTS {
        walk(top, pattern, String::new(), *to, &mut problems);
    }
    problems
}

fn walk(v: &mut Value, pattern: &[&str], path: String, to: To, out: &mut Vec<CastProblem>) {
    if let Value::Tagged(t) = v {
        return walk(&mut t.value, pattern, path, to, out);
    }
    let Some((first, rest)) = pattern.split_first() else {
        return;
    };
    match (v, *first) {
        (Value::Sequence(items), "[]") => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, rest, lines::index(&path, i), to, out);
            }
        }
        (Value::Mapping(m), key) => {
            let keys: Vec<Value> = if key == "*" {
                m.keys().cloned().collect()
            } else {
                vec![Value::String(key.to_string())]
            };
            for k in keys {
                let at = lines::join(&path, k.as_str().unwrap_or_default());
                if !rest.is_empty() {
                    if let Some(item) = m.get_mut(&k) {
                        walk(item, rest, at, to, out);
                    }
                    continue;
                }
                let Some(Value::String(s)) = m.get(&k) else {
                    continue;
                };
                match cast(s, to) {
                    Ok((value, warning)) => {
                        if let Some(w) = warning {
                            out.push((at, w, false));
                        }
                        m.insert(k, value);
                    }
                    // Reported here; the key goes so the typed read does not report it again.
                    Err(message) => {
                        out.push((at, message, true));
                        m.remove(&k);
                    }
                }
            }
        }
        _ => {}
    }
}

fn cast(s: &str, to: To) -> Result<(Value, Option<String>), String> {
    let t = s.trim();
    match to {
        To::Int => t
            .parse::<i64>()
            .map(|n| (Value::Number(n.into()), None))
            .map_err(|_| format!("expected an integer, found {s:?}")),
        To::Float => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| (Value::Number(f.into()), None))
            .ok_or_else(|| format!("expected a number, found {s:?}")),
        To::Bool => match t.to_ascii_lowercase().as_str() {
            "true" => Ok((Value::Bool(true), None)),
            "false" => Ok((Value::Bool(false), None)),
            "y" | "yes" | "on" => Ok((
                Value::Bool(true),
                Some(format!(
                    "{s:?} read as true (YAML 1.2 has no such boolean; write true)"
                )),
            )),
            "n" | "no" | "off" => Ok((
                Value::Bool(false),
                Some(format!(
                    "{s:?} read as false (YAML 1.2 has no such boolean; write false)"
                )),
            )),
            _ => Err(format!("expected a boolean (true or false), found {s:?}")),
        },
    }
}
