//! De-duplication: a pass that ends the way the last one did sends nothing. Per sink and per
//! topic (the revision's rollout; drift repairs) the last event sent is remembered by its
//! fingerprint; the same fingerprint again is sent only once `reminder` has passed since it
//! was last sent (no reminder: never again until something changes). Anything different —
//! a fix, a new commit, another error — is sent at once and becomes the new "last".

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Dedup {
    last: HashMap<(String, &'static str), (String, Instant)>,
}

impl Dedup {
    /// Whether `target` should get the event with fingerprint `fp` on `topic` now; a `true` is
    /// recorded as sent. The same fingerprint again passes once `reminder` has elapsed.
    pub fn admit(
        &mut self,
        target: &str,
        topic: &'static str,
        fp: &str,
        reminder: Option<Duration>,
        now: Instant,
    ) -> bool {
        let key = (target.to_string(), topic);
        let send = match self.last.get(&key) {
            Some((last, at)) if last == fp => {
                reminder.is_some_and(|r| now.saturating_duration_since(*at) >= r)
            }
            _ => true,
        };
        if send {
            self.last.insert(key, (fp.to_string(), now));
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{Event, EventKind};

    struct Remind(Dedup, Option<Duration>);
    impl Remind {
        fn admit(&mut self, target: &str, e: &Event, now: Instant) -> bool {
            self.0
                .admit(target, e.kind.topic(), &e.fingerprint(), self.1, now)
        }
    }

    #[test]
    fn same_failure_waits_for_the_reminder_and_a_change_goes_out_at_once() {
        let t0 = Instant::now();
        let mut d = Remind(Dedup::default(), Some(Duration::from_secs(3600)));
        let fail = Event::new(EventKind::Failed, "h", "abc").with_errors(["x"]);
        assert!(d.admit("chat", &fail, t0));
        assert!(!d.admit("chat", &fail, t0 + Duration::from_secs(60)));
        assert!(d.admit("other-sink", &fail, t0 + Duration::from_secs(60)));
        // A drift repair in between has its own slot and does not reset the failure's.
        let drift = Event::new(EventKind::DriftRepaired, "h", "abc");
        assert!(d.admit("chat", &drift, t0 + Duration::from_secs(61)));
        assert!(!d.admit("chat", &fail, t0 + Duration::from_secs(62)));
        assert!(d.admit("chat", &fail, t0 + Duration::from_secs(3600)));
        // Fixed, then broken the same way again: both are news.
        let ok = Event::new(EventKind::Applied, "h", "abd");
        assert!(d.admit("chat", &ok, t0 + Duration::from_secs(3601)));
        assert!(d.admit("chat", &fail, t0 + Duration::from_secs(3602)));

        let mut never = Remind(Dedup::default(), None);
        assert!(never.admit("c", &fail, t0));
        assert!(!never.admit("c", &fail, t0 + Duration::from_secs(1 << 30)));
    }
}
