//! De-duplication: a pass that ends the way the last one did sends nothing. Per sink and per
//! topic (the revision's rollout; drift repairs) the last event sent is remembered by its
//! fingerprint; the same fingerprint again is sent only once `reminder` has passed since it
//! was last sent (no reminder: never again until something changes). Anything different —
//! a fix, a new commit, another error — is sent at once and becomes the new "last".
//!
//! The daemon keeps this in `<state>/notify-sent.json`, so a restart does not re-send a failure
//! people were already told about. Wall-clock times, since they outlive the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sent {
    fingerprint: String,
    at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct Dedup {
    /// `target topic` → the last event sent there.
    last: BTreeMap<String, Sent>,
    file: Option<PathBuf>,
}

impl Dedup {
    /// Remembered in `file` across restarts; an unreadable file is reported and started afresh
    /// (the worst case is one repeated message).
    pub fn persistent(file: PathBuf) -> Self {
        let last = match crate::state::read_json(&file) {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "notification history unreadable; starting afresh");
                BTreeMap::new()
            }
        };
        Self {
            last,
            file: Some(file),
        }
    }

    /// Whether `target` should get the event with fingerprint `fp` on `topic` now; a `true` is
    /// recorded as sent. The same fingerprint again passes once `reminder` has elapsed.
    pub fn admit(
        &mut self,
        target: &str,
        topic: &'static str,
        fp: &str,
        reminder: Option<Duration>,
        now: DateTime<Utc>,
    ) -> bool {
        let key = format!("{target} {topic}");
        let send = match self.last.get(&key) {
            Some(last) if last.fingerprint == fp => {
                reminder.is_some_and(|r| (now - last.at).to_std().is_ok_and(|elapsed| elapsed >= r))
            }
            _ => true,
        };
        if send {
            let sent = Sent {
                fingerprint: fp.to_string(),
                at: now,
            };
            self.last.insert(key, sent);
            self.keep();
        }
        send
    }

    /// An admitted event that never went out (a full queue, the agent stopping): nobody was
    /// told, so it is not remembered as sent — the same event again is news.
    pub fn forget(&mut self, target: &str, topic: &str, fp: &str) {
        let key = format!("{target} {topic}");
        if self.last.get(&key).is_some_and(|l| l.fingerprint == fp) {
            self.last.remove(&key);
            self.keep();
        }
    }

    fn keep(&self) {
        if let Some(f) = &self.file {
            if let Err(e) = crate::state::write_json(f, &self.last) {
                tracing::warn!(error = %e, "could not keep the notification history");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{Event, EventKind};

    struct Remind(Dedup, Option<Duration>);
    impl Remind {
        fn admit(&mut self, target: &str, e: &Event, now: DateTime<Utc>) -> bool {
            self.0
                .admit(target, e.kind.topic(), &e.fingerprint(), self.1, now)
        }
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn same_failure_waits_for_the_reminder_and_a_change_goes_out_at_once() {
        let t0 = Utc::now();
        let mut d = Remind(Dedup::default(), Some(Duration::from_secs(3600)));
        let fail = Event::new(EventKind::Failed, "h", "abc").with_errors(["x"]);
        assert!(d.admit("chat", &fail, t0));
        assert!(!d.admit("chat", &fail, t0 + secs(60)));
        assert!(d.admit("other-sink", &fail, t0 + secs(60)));
        // A drift repair in between has its own slot and does not reset the failure's.
        let drift = Event::new(EventKind::DriftRepaired, "h", "abc");
        assert!(d.admit("chat", &drift, t0 + secs(61)));
        assert!(!d.admit("chat", &fail, t0 + secs(62)));
        assert!(d.admit("chat", &fail, t0 + secs(3600)));
        // Fixed, then broken the same way again: both are news.
        let ok = Event::new(EventKind::Applied, "h", "abd");
        assert!(d.admit("chat", &ok, t0 + secs(3601)));
        assert!(d.admit("chat", &fail, t0 + secs(3602)));

        // Kept across restarts.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sent.json");
        assert!(Remind(Dedup::persistent(file.clone()), None).admit("c", &fail, t0));
        let mut again = Remind(Dedup::persistent(file), None);
        assert!(!again.admit("c", &fail, t0));

        // Admitted but never delivered: the same event again goes out.
        let mut lost = Remind(Dedup::persistent(dir.path().join("lost.json")), None);
        assert!(lost.admit("c", &fail, t0));
        lost.0.forget("c", fail.kind.topic(), &fail.fingerprint());
        let mut again = Remind(Dedup::persistent(dir.path().join("lost.json")), None);
        assert!(again.admit("c", &fail, t0));

        let mut never = Remind(Dedup::default(), None);
        assert!(never.admit("c", &fail, t0));
        assert!(!never.admit("c", &fail, t0 + secs(1 << 20)));
    }
}
