//! Diagnostics: one problem in the desired state, located as precisely as the parser allows.
//! Every validator in the crate reports through this type so `validate` can print all
//! problems at once, sorted, in one format.
//!
//! A diagnostic is an error (the desired state is refused, nothing changes on the host) or a
//! warning (printed and logged, never blocks `apply`: an ignored key, an unset variable that
//! became an empty string, as Compose does).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Whether a diagnostic refuses the desired state.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem: which file, where in it (dotted path such as
/// `services.registry.networks.macula-infra.ipv4_address`), which line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error at `file:line`, `path`.
    pub fn error(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            path: path.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
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
        lines: Option<&crate::input::LineIndex>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.report(Severity::Error, file, lines, path.into(), message.into());
    }

    /// Report something the user should know that does not refuse the file.
    pub fn warn(
        &mut self,
        file: &Path,
        lines: Option<&crate::input::LineIndex>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.report(Severity::Warning, file, lines, path.into(), message.into());
    }

    fn report(
        &mut self,
        severity: Severity,
        file: &Path,
        lines: Option<&crate::input::LineIndex>,
        path: String,
        message: String,
    ) {
        let line = lines.and_then(|l| l.line_of(&path));
        self.items.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            path,
            message,
            severity,
        });
    }

    /// True when at least one diagnostic is an error (warnings alone never refuse a file).
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
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

    /// `Ok(warnings)` when nothing here is an error, else `Err(everything)`, both sorted:
    /// the shape every loader returns.
    pub fn into_result(self) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        if self.has_errors() {
            Err(self.into_sorted())
        } else {
            Ok(self.into_sorted())
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_alone_do_not_refuse() {
        let mut d = Diagnostics::default();
        d.warn(Path::new("a.yaml"), None, "version", "obsolete, ignored");
        assert!(!d.has_errors());
        let warnings = d.clone().into_result().expect("only warnings");
        assert_eq!(warnings[0].severity, Severity::Warning);
        d.error(Path::new("a.yaml"), None, "x", "bad");
        let all = d.into_result().expect_err("an error refuses");
        assert_eq!(all.len(), 2, "warnings travel with the errors");
    }
}
