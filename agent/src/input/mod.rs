//! The one reader of every YAML file the agent reads: compose files, `hosts.yaml`,
//! `routing.yaml`, `clusters.yaml`, `images.yaml` and the agent config.
//!
//! One pass (`yaml.rs`) turns the text into a `serde_yaml::Value` (so the serde types stay as
//! they are), its line index (`lines.rs`) and interpolated scalars (`interpolate.rs`), within
//! hard limits so a hostile or broken file gets a clear error in bounded time and memory.
//! `deserialize.rs` turns a value into a typed one reporting every unknown key (with the
//! nearest supported one) and every type error.

pub mod deserialize;
pub mod interpolate;
pub mod lines;
mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_yaml::Value;

use crate::diag::{Diagnostic, Diagnostics, Severity};
pub use deserialize::deserialize_at;
pub use interpolate::Env;
pub use lines::LineIndex;

/// Bounds on what one file may cost. Each can be set through the environment
/// (`MACULA_GITOPS_YAML_MAX_BYTES`, `_MAX_DEPTH`, `_MAX_NODES`, `_MAX_ALIAS_NODES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// File size, checked before the file is read.
    pub max_bytes: u64,
    /// Nesting of mappings and sequences.
    pub max_depth: usize,
    /// Nodes built, aliases counted expanded and anchors counted twice (they are copied).
    pub max_nodes: usize,
    /// Nodes produced by expanding aliases (what an alias bomb multiplies).
    pub max_alias_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 500_000,
            max_alias_nodes: 100_000,
        }
    }
}

impl Limits {
    /// The defaults with the environment's overrides, read once per process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<Limits> = OnceLock::new();
        *CURRENT.get_or_init(|| Self::from_vars(|k| std::env::var(k).ok()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let num = |name: &str, default: u64| {
            var(&format!("MACULA_GITOPS_YAML_{name}"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        Self {
            max_bytes: num("MAX_BYTES", d.max_bytes),
            max_depth: num("MAX_DEPTH", d.max_depth as u64) as usize,
            max_nodes: num("MAX_NODES", d.max_nodes as u64) as usize,
            max_alias_nodes: num("MAX_ALIAS_NODES", d.max_alias_nodes as u64) as usize,
        }
    }
}

/// Why a file could not be read at all. Shown after `file:line: ` (see `to_diagnostic`).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "file is {size} bytes, over the limit of {limit} bytes (MACULA_GITOPS_YAML_MAX_BYTES)"
    )]
    TooLarge { file: String, size: u64, limit: u64 },
    #[error("not UTF-8 text")]
    NotUtf8 { file: String },
    #[error("YAML syntax: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("a second YAML document starts here; one file holds one document")]
    MultipleDocuments { file: String, line: usize },
    #[error("nested deeper than the limit of {limit} levels (MACULA_GITOPS_YAML_MAX_DEPTH)")]
    TooDeep {
        file: String,
        line: usize,
        limit: usize,
    },
    #[error("more than the limit of {limit} YAML nodes (MACULA_GITOPS_YAML_MAX_NODES)")]
    TooManyNodes {
        file: String,
        line: usize,
        limit: usize,
    },
    #[error("aliases expand to more than the limit of {limit} nodes (MACULA_GITOPS_YAML_MAX_ALIAS_NODES)")]
    AliasExpansion {
        file: String,
        line: usize,
        limit: usize,
    },
}

impl InputError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        use InputError as E;
        let (file, line) = match self {
            E::Read { file, .. } | E::TooLarge { file, .. } | E::NotUtf8 { file } => (file, None),
            E::Syntax { file, line, .. }
            | E::MultipleDocuments { file, line }
            | E::TooDeep { file, line, .. }
            | E::TooManyNodes { file, line, .. }
            | E::AliasExpansion { file, line, .. } => (file, Some(*line)),
        };
        Diagnostic::error(file, line, "", self.to_string())
    }
}

/// A located problem found while reading that does not stop the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    line: u32,
    path: String,
    message: String,
    severity: Severity,
}

impl Problem {
    pub(crate) fn error(line: u32, path: &str, message: String) -> Self {
        Self {
            line,
            path: path.to_string(),
            message,
            severity: Severity::Error,
        }
    }

    pub(crate) fn warning(line: u32, path: &str, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(line, path, message)
        }
    }
}

/// One parsed file with what is needed to point at its lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown in diagnostics (relative to the desired-state root).
    pub rel: PathBuf,
    pub lines: LineIndex,
}

/// Read `root/rel` (shown as `rel`), interpolating with `env` when given. Problems go to
/// `diags`; `None` when the file could not be read or parsed at all.
pub fn read_yaml(
    root: &Path,
    rel: &Path,
    env: Option<&Env>,
    diags: &mut Diagnostics,
) -> Option<(Value, SourceFile)> {
    read_with(root, rel, env, &Limits::current(), diags)
}

pub fn read_with(
    root: &Path,
    rel: &Path,
    env: Option<&Env>,
    limits: &Limits,
    diags: &mut Diagnostics,
) -> Option<(Value, SourceFile)> {
    match read_text(&root.join(rel), rel, limits) {
        Ok(text) => parse_yaml(rel, &text, env, limits, diags),
        Err(e) => {
            diags.push(e.to_diagnostic());
            None
        }
    }
}

/// The file's text, refused before it is read when it is over the size limit.
pub fn read_text(path: &Path, shown: &Path, limits: &Limits) -> Result<String, InputError> {
    let file = shown.display().to_string();
    let read_err = |source| InputError::Read {
        file: file.clone(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let size = f.metadata().map_err(read_err)?.len();
    let too_large = |size| InputError::TooLarge {
        file: file.clone(),
        size,
        limit: limits.max_bytes,
    };
    if size > limits.max_bytes {
        return Err(too_large(size));
    }
    // The file may grow between the check and the read.
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(limits.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8 { file })
}

/// Parse text already in memory (shown as `rel`).
pub fn parse_yaml(
    rel: &Path,
    text: &str,
    env: Option<&Env>,
    limits: &Limits,
    diags: &mut Diagnostics,
) -> Option<(Value, SourceFile)> {
    let file = rel.display().to_string();
    if text.len() as u64 > limits.max_bytes {
        diags.push(
            InputError::TooLarge {
                file,
                size: text.len() as u64,
                limit: limits.max_bytes,
            }
            .to_diagnostic(),
        );
        return None;
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match yaml::build(&file, text, env, limits) {
        Ok(built) => {
            for p in built.problems {
                diags.push(Diagnostic {
                    file: rel.to_path_buf(),
                    line: Some(p.line as usize),
                    path: p.path,
                    message: p.message,
                    severity: p.severity,
                });
            }
            let source = SourceFile {
                rel: rel.to_path_buf(),
                lines: built.lines,
            };
            Some((built.value, source))
        }
        Err(e) => {
            diags.push(e.to_diagnostic());
            None
        }
    }
}

#[cfg(test)]
mod tests;
