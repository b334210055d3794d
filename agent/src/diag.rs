//! Diagnostics: one problem in the desired state, located as precisely as the parser allows.
//! Every validator in the crate reports through this type so `validate` can print all
//! problems at once, sorted, in one format.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One problem: which file, where in it (dotted path such as
/// `services.registry.networks.macula-infra.ipv4_address`), which line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Collects diagnostics; validators push into it and keep going.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Report a problem in `file` at `path`, looking the line up in `lines` when given.
    pub fn error(
        &mut self,
        file: &Path,
        lines: Option<&crate::desired::lines::LineIndex>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let path = path.into();
        let line = lines.and_then(|l| l.line_of(&path));
        self.items.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            path,
            message: message.into(),
        });
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sorted and de-duplicated, the order `validate` prints in.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort();
        self.items.dedup();
        self.items
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
