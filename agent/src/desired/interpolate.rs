//! Compose-style variable interpolation: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`.
//! Values come from the process environment, which wins over the `.env` file (as Compose does).

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::Value;

use super::lines;

/// The variables interpolation reads.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolateError {
    #[error("variable {name} is not set{}", hint(.message))]
    Missing { name: String, message: String },
    #[error("invalid interpolation syntax in {text:?}: {reason}")]
    Syntax { text: String, reason: &'static str },
}

fn hint(message: &str) -> String {
    if message.is_empty() {
        " (set it in the environment or in desired-state/.env)".to_string()
    } else {
        format!(": {message}")
    }
}

impl Env {
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Process environment layered over the dotenv file at `path` (if it exists).
    pub fn load(path: Option<&Path>) -> std::io::Result<Self> {
        let mut vars = HashMap::new();
        if let Some(p) = path {
            match std::fs::read_to_string(p) {
                Ok(text) => vars.extend(parse_dotenv(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        vars.extend(std::env::vars());
        Ok(Self { vars })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A plain `${VAR}` must be set: Compose would substitute an empty string with only a
    /// warning, which is how a missing password silently becomes an empty one.
    fn lookup(&self, name: &str) -> Result<&str, InterpolateError> {
        self.get(name).ok_or_else(|| InterpolateError::Missing {
            name: name.to_string(),
            message: String::new(),
        })
    }

    /// Interpolate one string.
    pub fn interpolate(&self, text: &str) -> Result<String, InterpolateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = matching_brace(body).ok_or_else(|| InterpolateError::Syntax {
                    text: text.to_string(),
                    reason: "missing closing '}'",
                })?;
                out.push_str(&self.expand(&body[..end], text)?);
                rest = &body[end + 1..];
            } else {
                let starts_name = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if !starts_name {
                    // A `$` not followed by a name is kept literally.
                    out.push('$');
                    rest = after;
                    continue;
                } else {
                    out.push_str(self.lookup(&after[..len])?);
                }
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn expand(&self, expr: &str, whole: &str) -> Result<String, InterpolateError> {
        let name_len = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_len);
        if name.is_empty() {
            return Err(InterpolateError::Syntax {
                text: whole.to_string(),
                reason: "empty variable name",
            });
        }
        let value = self.get(name);
        let set_nonempty = value.is_some_and(|v| !v.is_empty());
        let ops: [(&str, bool); 6] = [
            (":-", set_nonempty),
            ("-", value.is_some()),
            (":?", set_nonempty),
            ("?", value.is_some()),
            (":+", set_nonempty),
            ("+", value.is_some()),
        ];
        if op.is_empty() {
            return self.lookup(name).map(str::to_string);
        }
        for (sym, cond) in ops {
            if let Some(arg) = op.strip_prefix(sym) {
                return match sym {
                    ":-" | "-" if cond => Ok(value.unwrap_or("").to_string()),
                    ":-" | "-" => self.interpolate(arg),
                    ":?" | "?" if cond => Ok(value.unwrap_or("").to_string()),
                    ":?" | "?" => Err(InterpolateError::Missing {
                        name: name.to_string(),
                        message: self.interpolate(arg)?,
                    }),
                    _ if cond => self.interpolate(arg),
                    _ => Ok(String::new()),
                };
            }
        }
        Err(InterpolateError::Syntax {
            text: whole.to_string(),
            reason: "unsupported modifier (use :-, -, :?, ?, :+ or +)",
        })
    }

    /// Interpolate every string in `value` (keys stay as written, as in Compose).
    /// Errors are reported through `report(path, error)`; interpolation keeps going.
    pub fn interpolate_value(
        &self,
        value: &mut Value,
        path: &str,
        report: &mut dyn FnMut(&str, InterpolateError),
    ) {
        match value {
            Value::String(s) if s.contains('$') => match self.interpolate(s) {
                Ok(v) => *s = v,
                Err(e) => report(path, e),
            },
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_value(item, &lines::index(path, i), report);
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    let key = k.as_str().map(str::to_string).unwrap_or_default();
                    self.interpolate_value(v, &lines::join(path, &key), report);
                }
            }
            Value::Tagged(t) => self.interpolate_value(&mut t.value, path, report),
            _ => {}
        }
    }
}

/// Index of the `}` closing a `${`, allowing nested `${...}` in defaults.
fn matching_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parse a dotenv file: `KEY=value`, `export KEY=value`, `#` comments, single or double quotes.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = if v.len() >= 2
                && ((v.starts_with('"') && v.ends_with('"'))
                    || (v.starts_with('\'') && v.ends_with('\'')))
            {
                v[1..v.len() - 1].to_string()
            } else {
                // An unquoted value ends at an inline comment.
                v.split(" #").next().unwrap_or("").trim_end().to_string()
            };
            Some((k.trim().to_string(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_pairs([("A", "1"), ("EMPTY", ""), ("B", "two")])
    }

    #[test]
    fn table() {
        let cases = [
            ("plain", "plain"),
            ("${A}", "1"),
            ("$A-x", "1-x"),
            ("$$A", "$A"),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET-def}", "def"),
            ("${A:+alt}", "alt"),
            ("${UNSET:+alt}", ""),
            ("${UNSET:-${B}}", "two"),
            ("cost $5", "cost $5"),
        ];
        for (input, want) in cases {
            assert_eq!(env().interpolate(input).unwrap(), want, "input {input}");
        }
    }

    #[test]
    fn required_variables() {
        let err = env()
            .interpolate("${UNSET:?set the db password}")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable UNSET is not set: set the db password"
        );
        assert!(env().interpolate("${EMPTY:?x}").is_err());
        assert_eq!(env().interpolate("${EMPTY?x}").unwrap(), "");
        assert!(env().interpolate("${A").is_err());
        assert!(matches!(
            env().interpolate("x ${UNSET} $UNSET"),
            Err(InterpolateError::Missing { .. })
        ));
    }

    #[test]
    fn dotenv() {
        let parsed = parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x' \nD=v # note\n");
        assert_eq!(
            parsed,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "v".into())
            ]
        );
    }
}
