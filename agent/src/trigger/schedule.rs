//! Cron: extra run times, and the apply window (when applying is allowed at all).
//!
//! Expressions use the `cron` crate's syntax with seconds: `sec min hour dom month dow [year]`,
//! evaluated in the host's local time (a maintenance window is a wall-clock thing).

use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};

use super::{Cause, Trigger};

/// Is applying allowed at `now`? No window = always.
pub fn in_window<Z: TimeZone>(window: Option<&cron::Schedule>, now: &DateTime<Z>) -> bool {
    match window {
        None => true,
        Some(w) => {
            // `includes` matches whole seconds; drop the sub-second part.
            let secs = now.timestamp();
            let tz = now.timezone();
            let t = tz
                .timestamp_opt(secs, 0)
                .single()
                .unwrap_or_else(|| now.clone());
            w.includes(t)
        }
    }
}

/// When the window next opens (the first allowed second after `now`), if ever.
pub fn next_opening<Z: TimeZone>(
    window: &cron::Schedule,
    now: &DateTime<Z>,
) -> Option<DateTime<Z>> {
    window.after(now).next()
}

fn until<Z: TimeZone>(t: &DateTime<Z>) -> Duration {
    (t.clone().with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
}

/// Fire `Cron` at each time of `schedule`.
pub async fn run_cron(schedule: cron::Schedule, trigger: Trigger) {
    loop {
        let Some(next) = schedule.upcoming(Local).next() else {
            return;
        };
        tokio::time::sleep(until(&next)).await;
        tracing::debug!(at = %next, "cron trigger");
        trigger.fire(Cause::Cron);
    }
}

/// Fire `WindowOpened` each time the apply window opens, so changes held back while it was
/// closed are applied without waiting for the next poll.
pub async fn run_window(window: cron::Schedule, trigger: Trigger) {
    // Re-check at least this often: wall-clock jumps (NTP, suspend) must not strand us.
    const MAX_SLEEP: Duration = Duration::from_secs(300);
    const INSIDE_RECHECK: Duration = Duration::from_secs(30);
    let mut was_inside = in_window(Some(&window), &Local::now());
    loop {
        let now = Local::now();
        let inside = in_window(Some(&window), &now);
        if inside && !was_inside {
            tracing::info!("apply window opened");
            trigger.fire(Cause::WindowOpened);
        }
        was_inside = inside;
        let sleep = if inside {
            INSIDE_RECHECK
        } else {
            match next_opening(&window, &now) {
                Some(t) => until(&t).min(MAX_SLEEP),
                None => return,
            }
        };
        tokio::time::sleep(sleep.max(Duration::from_millis(200))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::str::FromStr;

    #[test]
    fn window_two_to_four() {
        let w = cron::Schedule::from_str("* * 2-3 * * *").expect("cron");
        let at = |h, m| {
            Utc.with_ymd_and_hms(2026, 3, 1, h, m, 7)
                .single()
                .expect("time")
        };
        assert!(!in_window(Some(&w), &at(1, 59)));
        assert!(in_window(Some(&w), &at(2, 0)));
        assert!(in_window(Some(&w), &at(3, 59)));
        assert!(!in_window(Some(&w), &at(4, 0)));
        assert!(in_window(None, &at(12, 0)));
        let open = next_opening(&w, &at(12, 0)).expect("opens again");
        assert_eq!(
            open,
            Utc.with_ymd_and_hms(2026, 3, 2, 2, 0, 0)
                .single()
                .expect("t")
        );
    }
}
