//! Compose-style variable interpolation: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`.
//! Values come from the process environment, which wins over the env file (as Compose does).
//! An unset `${VAR}` without a default is an empty string, as Compose has it; the reader turns
//! the names it collects into warnings. `${VAR:?msg}` is the way to make a variable required.

use std::collections::HashMap;
use std::path::Path;

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

    /// This environment under `base`: a name set here wins. Compose reads the project
    /// directory's `.env` only for names the environment it was started with does not set.
    pub fn over(&self, base: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut vars: HashMap<String, String> = base.into_iter().collect();
        vars.extend(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self { vars }
    }

    /// A plain `${VAR}` that is not set is empty; its name goes to `unset`.
    fn lookup<'a>(&'a self, name: &str, unset: &mut Vec<String>) -> &'a str {
        self.get(name).unwrap_or_else(|| {
            unset.push(name.to_string());
            ""
        })
    }

    /// Interpolate one string; names of unset variables read as empty go to `unset`.
    pub fn interpolate(
        &self,
        text: &str,
        unset: &mut Vec<String>,
    ) -> Result<String, InterpolateError> {
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
                out.push_str(&self.expand(&body[..end], text, unset)?);
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
                    out.push_str(self.lookup(&after[..len], unset));
                }
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn expand(
        &self,
        expr: &str,
        whole: &str,
        unset: &mut Vec<String>,
    ) -> Result<String, InterpolateError> {
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
            return Ok(self.lookup(name, unset).to_string());
        }
        for (sym, cond) in ops {
            if let Some(arg) = op.strip_prefix(sym) {
                return match sym {
                    ":-" | "-" if cond => Ok(value.unwrap_or("").to_string()),
                    ":-" | "-" => self.interpolate(arg, unset),
                    ":?" | "?" if cond => Ok(value.unwrap_or("").to_string()),
                    ":?" | "?" => Err(InterpolateError::Missing {
                        name: name.to_string(),
                        message: self.interpolate(arg, unset)?,
                    }),
                    _ if cond => self.interpolate(arg, unset),
                    _ => Ok(String::new()),
                };
            }
        }
        Err(InterpolateError::Syntax {
            text: whole.to_string(),
            reason: "unsupported modifier (use :-, -, :?, ?, :+ or +)",
        })
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
            let mut unset = Vec::new();
            let got = env().interpolate(input, &mut unset).unwrap();
            assert_eq!(got, want, "input {input}");
            assert!(unset.is_empty(), "input {input}: {unset:?}");
        }
    }

    #[test]
    fn required_variables() {
        let mut unset = Vec::new();
        let err = env()
            .interpolate("${UNSET:?set the db password}", &mut unset)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable UNSET is not set: set the db password"
        );
        assert!(env().interpolate("${EMPTY:?x}", &mut unset).is_err());
        assert_eq!(env().interpolate("${EMPTY?x}", &mut unset).unwrap(), "");
        assert!(env().interpolate("${A", &mut unset).is_err());
        assert!(unset.is_empty());
    }

    #[test]
    fn unset_without_default_is_empty_and_noted() {
        let mut unset = Vec::new();
        let got = env().interpolate("x ${UNSET} $ALSO.", &mut unset).unwrap();
        assert_eq!(got, "x  .");
        assert_eq!(unset, ["UNSET", "ALSO"]);
    }

    #[test]
    fn over_keeps_this_environment_first() {
        let project = [
            ("A".to_string(), "from .env".to_string()),
            ("P".into(), "p".into()),
        ];
        let layered = env().over(project);
        assert_eq!(layered.get("A"), Some("1"));
        assert_eq!(layered.get("P"), Some("p"));
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
