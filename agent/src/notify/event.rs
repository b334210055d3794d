//! What happened to a revision on this host, as every sink and commit-status provider sees it.
//! Built by the daemon from its pass outcome; everything outside (formats, templates, commit
//! status) reads only this.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most this many services/errors go into a message; the rest are counted ("… and 3 more"),
/// so a pass that breaks 200 services still sends a message a chat will accept.
pub const MAX_ITEMS: usize = 20;
/// An error longer than this is cut (engine errors can quote whole responses).
pub const MAX_ERROR_CHARS: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A revision starts applying (commit status `pending`; not a chat message by default).
    Applying,
    /// A revision was applied and every service converged.
    Applied,
    /// Applying a revision failed for some services (or the pass failed).
    Failed,
    /// A revision was rolled back to the last good one.
    RolledBack,
    /// Containers that drifted (stopped, removed) were repaired from the applied revision.
    DriftRepaired,
    /// The revision's desired state is invalid; nothing was changed.
    Invalid,
    /// The revision was refused before loading (unsafe tree entries, signature check).
    Refused,
    /// The revision waits for the apply window (or a suspend).
    Held,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        Self::Applying,
        Self::Applied,
        Self::Failed,
        Self::RolledBack,
        Self::DriftRepaired,
        Self::Invalid,
        Self::Refused,
        Self::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::DriftRepaired => "drift-repaired",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
            Self::Held => "held",
        }
    }

    /// The words after the host name in a message: "lab-01: failed to apply 1a2b3c4".
    pub fn headline(self) -> &'static str {
        match self {
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Failed => "failed to apply",
            Self::RolledBack => "rolled back",
            Self::DriftRepaired => "repaired drift of",
            Self::Invalid => "refused invalid revision",
            Self::Refused => "refused revision",
            Self::Held => "holding revision",
        }
    }

    /// Something a person should look at.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::RolledBack | Self::Invalid | Self::Refused
        )
    }

    /// Events about the revision's rollout share one de-duplication slot; drift repairs have
    /// their own, so a repair between two identical failures does not re-send the failure.
    pub(crate) fn topic(self) -> &'static str {
        match self {
            Self::DriftRepaired => "drift",
            _ => "revision",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service's part in the event: `change` is what the pass did or found
/// ("created", "recreated (image)", "failed: …", "unhealthy").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    pub change: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub host: String,
    /// Full commit id.
    pub revision: String,
    /// Commit author as `Name <email>`; empty when unknown.
    pub author: String,
    /// The commit subject.
    pub summary: String,
    pub services: Vec<ServiceChange>,
    pub errors: Vec<String>,
    pub at: DateTime<Utc>,
}

impl Event {
    pub fn new(kind: EventKind, host: &str, revision: &str) -> Self {
        Self {
            kind,
            host: host.into(),
            revision: revision.into(),
            author: String::new(),
            summary: String::new(),
            services: Vec::new(),
            errors: Vec::new(),
            at: Utc::now(),
        }
    }

    /// Errors go out to other systems: credentials in URLs are masked and long texts cut.
    pub fn with_errors<I, S>(mut self, errors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.errors = errors
            .into_iter()
            .map(|e| clip(&crate::redact::redact(e.as_ref()), MAX_ERROR_CHARS))
            .collect();
        self
    }

    /// `{short}`: a commit's 7 digits, or `dir:` and 12 digest digits for a local directory.
    pub fn short_revision(&self) -> String {
        crate::source::short_revision(&self.revision, 7)
    }

    /// What makes two events "the same" for de-duplication: kind, revision, services and errors
    /// (not the time or the commit text).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind.as_str());
        h.update([0]);
        h.update(&self.revision);
        for s in &self.services {
            h.update([1]);
            h.update(&s.service);
            h.update([0]);
            h.update(&s.change);
        }
        for e in &self.errors {
            h.update([2]);
            h.update(e);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// `- stack/web: recreated` lines, at most [`MAX_ITEMS`], each after a newline.
    pub fn services_text(&self) -> String {
        list(
            self.services
                .iter()
                .map(|s| format!("{}: {}", s.service, s.change)),
        )
    }

    /// `- error` lines, at most [`MAX_ITEMS`], each after a newline.
    pub fn errors_text(&self) -> String {
        list(self.errors.iter().cloned())
    }
}

fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut out = String::new();
    for item in items.take(MAX_ITEMS) {
        let _ = write!(out, "\n- {item}");
    }
    if total > MAX_ITEMS {
        let _ = write!(out, "\n- … and {} more", total - MAX_ITEMS);
    }
    out
}

/// `text` cut to `max` characters (on a char boundary) with an ellipsis.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_redacted_cut_and_listed_with_a_count() {
        let e = Event::new(EventKind::Failed, "h", "0123456789abcdef").with_errors(
            (0..25)
                .map(|i| format!("pull https://bot:tok@reg.example/x failed {i}"))
                .chain(["y".repeat(500)]),
        );
        assert_eq!(e.short_revision(), "0123456");
        assert!(!e.errors_text().contains("tok"), "{}", e.errors_text());
        assert!(e.errors[0].contains("https://***@reg.example/x"));
        assert_eq!(e.errors[25].chars().count(), MAX_ERROR_CHARS + 1);
        let text = e.errors_text();
        assert_eq!(text.lines().count(), 1 + MAX_ITEMS + 1);
        assert!(text.ends_with("\n- … and 6 more"), "{text}");
    }

    #[test]
    fn fingerprint_ignores_time_and_commit_text_but_not_errors() {
        let a = Event::new(EventKind::Failed, "h", "abc").with_errors(["x"]);
        let mut b = a.clone();
        b.at = Utc::now() + chrono::Duration::hours(1);
        b.summary = "other".into();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = a.clone().with_errors(["y"]);
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.kind = EventKind::RolledBack;
        assert_ne!(a.fingerprint(), d.fingerprint());
    }
}
