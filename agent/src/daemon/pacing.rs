//! Pacing of drift repair, per service: a container that dies again soon after the agent
//! (re)started it is crash-looping, and restarting it back to back would hammer the engine and
//! flood logs and notifications. Like Docker's restart policy, the pause doubles with each
//! quick death and the streak ends once a container stays up.
//!
//! Only a `die` counts, only within [`QUICK`] of the agent's own start, and only when the process
//! ended by itself: a kill from outside (exit code 137 or 143: `docker stop`, `kill`, `rm -f`)
//! never counts, so stops and removals by hand, even in a row as the drift benchmark makes them,
//! are repaired at once, and so is a container that ran for a while. Removing a paced crash
//! loop's container by hand (`destroy`) releases it: it is recreated at once. (A process the OOM
//! killer ends is a kill too: an out-of-memory loop is not paced.) A
//! held service's liveness is left alone by every pass until its time (`PlanOptions::watched`);
//! the daemon fires a drift pass when it falls due.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::drift::DriftEvent;

/// A death this soon after the agent started the container is part of a crash loop.
pub const QUICK: Duration = Duration::from_secs(10);
/// The pause before the second repair of a streak; it doubles from there.
const FIRST: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(300);

/// Exit codes of a process killed by SIGKILL or SIGTERM.
const KILLED: [i64; 2] = [137, 143];

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

    /// When to repair after `ev`, seen at `now`.
    pub fn event(&mut self, ev: &DriftEvent, now: Instant) -> Repair {
        if ev.action == "destroy" {
            if let Some(t) = self.services.get_mut(&ev.service) {
                t.due = None;
            }
        }
        if ev.action != "die" || ev.exit_code.is_some_and(|c| KILLED.contains(&c)) {
            return Repair::Now;
        }
        let t = self.services.entry(ev.service.clone()).or_default();
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

    /// Someone asked for a pass (`reconcile`, `resume`): every held service is started now; the
    /// streaks go on, so a crash after that is held again.
    pub fn release_all(&mut self) {
        for t in self.services.values_mut() {
            t.due = None;
        }
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

    /// `action` of `service`; a `die` exits 1 unless `code` says otherwise.
    fn ev(service: &str, action: &str, code: Option<i64>) -> DriftEvent {
        DriftEvent {
            container: String::new(),
            service: service.into(),
            action: action.into(),
            time: None,
            exit_code: code,
        }
    }

    fn die(service: &str) -> DriftEvent {
        ev(service, "die", Some(1))
    }

    /// Drive `p` through a crash loop from `t0`: each repair starts the container when due, and
    /// it dies `life` later. Returns the pause before each repair.
    fn crash_loop(p: &mut Pacing, t0: Instant, life: Duration, deaths: usize) -> Vec<Duration> {
        let mut now = t0;
        p.started([SVC], now);
        let mut pauses = Vec::new();
        for _ in 0..deaths {
            now += life;
            let delay = match p.event(&die(SVC), now) {
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
        assert_eq!(p.event(&die(SVC), t + QUICK + secs(1.0)), Repair::Now);
        p.started([SVC], t + secs(20.0));
        assert_eq!(p.event(&die(SVC), t + secs(20.5)), Repair::Now);
        p.started([SVC], t + secs(21.0));
        assert_eq!(
            p.event(&die(SVC), t + secs(21.5)),
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
        // Stopped or removed by hand (`rm -f`: killed, then destroyed) again and again right
        // after each repair: never held.
        for i in 0..5 {
            let at = t0 + secs(f64::from(i));
            for e in [
                ev(SVC, "die", Some(137)),
                ev(SVC, "destroy", None),
                ev(SVC, "die", Some(143)),
                ev(SVC, "health_status: unhealthy", None),
                ev("", "events-reconnected", None),
            ] {
                assert_eq!(p.event(&e, at), Repair::Now, "{e:?}");
            }
            p.started([SVC], at + secs(0.5));
        }
        // A container the agent did not start lately, stopped once by hand.
        assert_eq!(p.event(&die("s/old"), t0), Repair::Now);
        // Stopped once by hand right after the agent started it: still at once.
        assert_eq!(p.event(&die("s/app"), t0 + secs(0.5)), Repair::Now);
        assert!(p.held(t0 + secs(1.0)).is_empty());
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn removing_a_paced_container_releases_it() {
        let t0 = Instant::now();
        let mut p = Pacing::default();
        crash_loop(&mut p, t0, secs(0.1), 3);
        let t = t0 + secs(4.0);
        assert!(matches!(
            p.event(&die(SVC), t),
            Repair::After { streak: 4, .. }
        ));
        // Removed by hand while held (an exited container: destroy alone): recreated at once,
        // and a crash after that goes on with the streak.
        assert_eq!(
            p.event(&ev(SVC, "destroy", None), t + secs(1.0)),
            Repair::Now
        );
        assert!(p.held(t + secs(1.0)).is_empty());
        p.started([SVC], t + secs(1.5));
        assert!(matches!(
            p.event(&die(SVC), t + secs(1.6)),
            Repair::After { streak: 5, .. }
        ));
    }

    #[test]
    fn a_held_repair_is_listed_until_it_falls_due_or_is_asked_for() {
        let t0 = Instant::now();
        let mut p = Pacing::default();
        p.started([SVC], t0);
        assert_eq!(p.event(&die(SVC), t0 + secs(0.1)), Repair::Now);
        p.started([SVC], t0 + secs(0.5));
        let paced = p.event(&die(SVC), t0 + secs(0.6));
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
        p.started([SVC], due);
        assert!(matches!(
            p.event(&die(SVC), due + secs(0.1)),
            Repair::After { streak: 3, .. }
        ));
        p.release_all();
        assert!(p.held(due + secs(0.2)).is_empty(), "asked for: started now");
        p.started([SVC], due + secs(0.5));
        assert!(matches!(
            p.event(&die(SVC), due + secs(0.6)),
            Repair::After { streak: 4, .. }
        ));
        assert!(p.fall_due(due + secs(5.0)));
        assert_eq!(p.next_due(), None);
        assert!(!p.fall_due(due + secs(1.0)), "released once");
    }
}
