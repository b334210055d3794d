//! The one place an outcome becomes text: `apply`'s output, the daemon's log summary and the
//! outcome part of `macula-gitops status`.

use std::fmt::{self, Write as _};

use super::{Change, DiagnosticView, Hold, ItemError, Outcome, PassResult};
use crate::diag::Diagnostic;

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Suspended => f.write_str("suspended"),
            Hold::OutsideWindow { .. } => f.write_str("outside the apply window"),
        }
    }
}

impl fmt::Display for DiagnosticView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Diagnostic {
            file: self.file.clone(),
            line: self.line,
            path: self.path.clone(),
            message: self.message.clone(),
            severity: self.severity,
        };
        write!(f, "{d}")
    }
}

impl fmt::Display for PassResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassResult::Held { reason } => write!(f, "held ({reason})"),
            other => f.write_str(other.label()),
        }
    }
}

/// An outcome as a person reads it: what changed (stdout) and what went wrong (stderr).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text {
    pub out: String,
    pub err: String,
}

impl Outcome {
    /// `3 failed, 5 tried (2 changed)`.
    /// `3 failed, 5 tried (2 changed)`, `… (2 changed, 1 skipped)` when items were skipped.
    pub fn summary(&self) -> String {
        let skipped = match self.skipped.len() {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        format!(
            "{} failed, {} tried ({} changed{skipped})",
            self.failed,
            self.tried,
            self.changed()
        )
    }

    /// `apply`'s text: one line per change and the summary on stdout; each failure (or every
    /// problem of an invalid desired state) on stderr.
    pub fn text(&self) -> Text {
        let mut t = Text::default();
        for c in &self.changes {
            let _ = writeln!(t.out, "{c}");
        }
        match &self.result {
            PassResult::Applied | PassResult::Failed | PassResult::RolledBack { .. } => {
                if let PassResult::RolledBack { to, services } = &self.result {
                    let to: String = to.chars().take(12).collect();
                    let _ = writeln!(t.err, "rolled back to {to}: {}", services.join(", "));
                }
                for e in &self.errors {
                    let _ = writeln!(t.err, "failed: {e}");
                }
                for e in &self.skipped {
                    let _ = writeln!(t.err, "skipped: {e}");
                }
                let _ = writeln!(t.out, "{}", self.summary());
            }
            PassResult::Invalid { diagnostics } => {
                for d in diagnostics {
                    let _ = writeln!(t.err, "{}: {d}", d.severity);
                }
                let errors = diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::diag::Severity::Error)
                    .count();
                let _ = writeln!(
                    t.err,
                    "{errors} problem(s) in the desired state; nothing was changed"
                );
            }
            PassResult::Refused {
                message,
                diagnostics,
            } => {
                let _ = writeln!(t.err, "refused: {message}");
                for d in diagnostics {
                    let _ = writeln!(t.err, "  {d}");
                }
            }
            PassResult::Error { message } | PassResult::FetchFailed { message } => {
                let _ = writeln!(t.err, "error: {message}");
            }
            PassResult::Held { reason } => {
                let _ = writeln!(t.out, "held: {reason}; nothing was applied");
            }
        }
        t
    }

    /// The outcome's part of `macula-gitops status`: data directories and clusters.
    pub fn status_lines(&self) -> String {
        let mut o = String::new();
        if !self.data.is_empty() {
            let _ = writeln!(o, "data (read-write binds; removed only by `data rm`):");
            for d in &self.data {
                let _ = writeln!(
                    o,
                    "  {:<30} {}",
                    format!("{}/{}", d.stack, d.path),
                    d.dir.display()
                );
            }
        }
        if !self.changes.is_empty() {
            let _ = writeln!(o, "last changes:");
            for c in &self.changes {
                let _ = writeln!(o, "  {c}");
            }
        }
        for e in &self.skipped {
            let _ = writeln!(o, "skipped:   {e}");
        }
        for c in &self.clusters {
            let ks: Vec<String> = c
                .kustomizations
                .iter()
                .map(|k| {
                    format!(
                        "{}={} {}",
                        k.name,
                        k.ready,
                        k.revision.as_deref().unwrap_or("")
                    )
                })
                .collect();
            let flux = c
                .flux
                .as_ref()
                .map(|f| {
                    format!(
                        "flux {} sha256:{} ",
                        f.version.as_deref().unwrap_or("?"),
                        &f.sha256[..f.sha256.len().min(12)]
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(o, "cluster:   {} {flux}{}", c.name, ks.join(", "));
        }
        o
    }
}
