//! Pacing of drift repair, per service: a container that dies again soon after the agent
//! (re)started it is crash-looping, and restarting it back to back would hammer the engine and
//! flood logs and notifications. Like Docker's restart policy, the pause doubles with each
//! quick death and the streak ends once a container stays up.
//!
//! Only a `die` counts, and only within [`QUICK`] of the agent's own start: a container stopped
//! once by hand, or one that ran for a while, is repaired at once, and a removal (`destroy`) is
//! never paced (`docker rm -f` in a row, as the drift benchmark does, is recreated at once). A
//! held service's liveness is left alone by every pass until its time (`PlanOptions::watched`);
//! the daemon fires a drift pass when it falls due.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A death this soon after the agent started the container is part of a crash loop.
pub const QUICK: Duration = Duration::from_secs(10);
/// The pause before the second repair of a streak; it doubles from there.
const FIRST: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(300);

/// What to do about a drift event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    Now,
    /// Held for `delay`: the `streak`-th quick death in a row.
    After {
        delay: Duration,
        streak: u32,
    },
}

#[derive(Debug, Default)]
struct Track {
    /// When a pass last created, started or restarted a container of the service.
    started: Option<Instant>,
    /// Quick deaths in a row.
    streak: u32,
    /// The repair is held until then.
    due: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Pacing {
    services: BTreeMap<String, Track>,
}

impl Pacing {
    /// A pass (re)started `services` (`stack/service`); it ended at `now`.
    pub fn started<'a>(&mut self, services: impl IntoIterator<Item = &'a str>, now: Instant) {
        for s in services {
            self.services.entry(s.to_string()).or_default().started = Some(now);
        }
    }

    /// When to repair after `action` of `service`, seen at `now`.
    pub fn event(&mut self, service: &str, action: &str, now: Instant) -> Repair {
        if action != "die" {
            return Repair::Now;
        }
        let t = self.services.entry(service.to_string()).or_default();
        let quick = t.started.is_some_and(|s| now.duration_since(s) < QUICK);
        if !quick {
            t.streak = 0;
            return Repair::Now;
        }
        t.streak += 1;
        match pause(t.streak) {
            None => Repair::Now,
            Some(delay) => {
                t.due = Some(now + delay);
                Repair::After {
                    delay,
                    streak: t.streak,
                }
            }
        }
    }

    /// Held services and how long each still waits, at `now`.
    pub fn held(&self, now: Instant) -> BTreeMap<String, Duration> {
        self.services
            .iter()
            .filter_map(|(s, t)| {
                let left = t.due?.checked_duration_since(now)?;
                (!left.is_zero()).then(|| (s.clone(), left))
            })
            .collect()
    }

    /// The next time a held repair falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.services.values().filter_map(|t| t.due).min()
    }

    /// Release the repairs due by `now`; true if there were any (a drift pass is due).
    pub fn fall_due(&mut self, now: Instant) -> bool {
        let mut any = false;
        for t in self.services.values_mut() {
            if t.due.is_some_and(|d| d <= now) {
                t.due = None;
                any = true;
            }
        }
        any
    }
}

/// The pause before repairing the `streak`-th quick death: none for the first.
fn pause(streak: u32) -> Option<Duration> {
    let doublings = streak.checked_sub(2)?;
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    Some(FIRST.saturating_mul(factor).min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "s/crash";

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    /// Drive `p` through a crash loop from `t0`: each repair starts the container when due, and
    /// it dies `life` later. Returns the pause before each repair.
    fn crash_loop(p: &mut Pacing, t0: Instant, life: Duration, deaths: usize) -> Vec<Duration> {
        let mut now = t0;
        p.started([SVC], now);
        let mut pauses = Vec::new();
        for _ in 0..deaths {
            now += life;
            let delay = match p.event(SVC, "die", now) {
                Repair::Now => Duration::ZERO,
                Repair::After { delay, .. } => delay,
            };
            pauses.push(delay);
            now += delay;
            assert!(p.fall_due(now) || delay.is_zero());
            p.started([SVC], now);
        }
        pauses
    }

    #[test]
    fn a_crash_loop_is_repaired_at_once_then_after_doubling_pauses_up_to_the_cap() {
        let mut p = Pacing::default();
        let pauses = crash_loop(&mut p, Instant::now(), secs(0.1), 13);
        let want: Vec<Duration> = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        assert_eq!(pauses, want);
    }

    #[test]
    fn a_streak_ends_when_the_container_stays_up() {
        let t0 = Instant::now();
        let mut p = Pacing::default();
        crash_loop(&mut p, t0, secs(0.1), 4);
        let t = t0 + secs(60.0);
        p.started([SVC], t);
        // Up for longer than QUICK: this death is no part of the streak, nor the next one.
        assert_eq!(p.event(SVC, "die", t + QUICK + secs(1.0)), Repair::Now);
        p.started([SVC], t + secs(20.0));
        assert_eq!(p.event(SVC, "die", t + secs(20.5)), Repair::Now);
        p.started([SVC], t + secs(21.0));
        assert_eq!(
            p.event(SVC, "die", t + secs(21.5)),
            Repair::After {
                delay: secs(1.0),
                streak: 2
            }
        );
    }

    #[test]
    fn removals_stops_by_hand_and_other_services_are_not_paced() {
        let t0 = Instant::now();
        let mut p = Pacing::default();
        p.started([SVC, "s/app"], t0);
        // Removed by hand again and again right after each repair: never held.
        for i in 0..5 {
            let at = t0 + secs(f64::from(i));
            assert_eq!(p.event(SVC, "destroy", at), Repair::Now);
            assert_eq!(p.event(SVC, "health_status: unhealthy", at), Repair::Now);
            assert_eq!(p.event(SVC, "events-reconnected", at), Repair::Now);
            p.started([SVC], at);
        }
        // A container the agent did not start lately, stopped once by hand.
        assert_eq!(p.event("s/old", "die", t0), Repair::Now);
        // Stopped once by hand right after the agent started it: still at once.
        assert_eq!(p.event("s/app", "die", t0 + secs(0.5)), Repair::Now);
        assert!(p.held(t0 + secs(1.0)).is_empty());
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn a_held_repair_is_listed_until_it_falls_due() {
        let t0 = Instant::now();
        let mut p = Pacing::default();
        p.started([SVC], t0);
        assert_eq!(p.event(SVC, "die", t0 + secs(0.1)), Repair::Now);
        p.started([SVC], t0 + secs(0.5));
        let paced = p.event(SVC, "die", t0 + secs(0.6));
        assert_eq!(
            paced,
            Repair::After {
                delay: secs(1.0),
                streak: 2
            }
        );
        let due = t0 + secs(1.6);
        assert_eq!(p.next_due(), Some(due));
        assert_eq!(
            p.held(t0 + secs(1.1)),
            BTreeMap::from([(SVC.to_string(), secs(0.5))])
        );
        assert!(!p.fall_due(t0 + secs(1.5)), "not yet");
        assert!(p.fall_due(due));
        assert!(p.held(due).is_empty());
        assert_eq!(p.next_due(), None);
        assert!(!p.fall_due(due + secs(1.0)), "released once");
    }
}
