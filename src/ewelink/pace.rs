//! Pacing of outgoing calls so the cloud never sees bursts beyond its published limits: a minimum gap
//! between calls with the same key (CoolKit asks for at least 500 ms between calls to the same endpoint),
//! a minimum gap between any two calls, and at most `window_max` calls per `window` (300 per 5 minutes).
//!
//! [`Pacer::wait`] reserves the earliest slot that satisfies every rule and sleeps until it, so concurrent
//! callers are served in arrival order. [`Pacer::hold`] is stricter, for calls with an answer: calls with the
//! same key run one at a time and the gap is counted from the end of the previous one, so the server sees
//! the gap even when a request was slow to leave. Knows nothing of what is being sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct PaceRules {
    /// Minimum time between two calls with the same key.
    pub same_key_gap: Duration,
    /// Minimum time between any two calls.
    pub any_gap: Duration,
    /// At most `window_max` calls in any `window` (`window_max == 0` disables the rule).
    pub window: Duration,
    pub window_max: usize,
}

impl PaceRules {
    /// CoolKit's published HTTP limits: 500 ms between calls to the same endpoint, 300 calls per 5 minutes.
    ///
    /// The window is counted from each call's slot, but the cloud counts from the call's arrival, which can
    /// be up to the HTTP client's 20 s timeout later: the window is kept for 5 minutes and 20 s, so that the
    /// 301st call never reaches the cloud within 5 minutes of the first (with exactly 5 minutes, a call that
    /// left at its slot could arrive before one that left late).
    pub fn cloud_http() -> Self {
        PaceRules {
            same_key_gap: Duration::from_millis(500),
            any_gap: Duration::ZERO,
            window: Duration::from_secs(300 + 20),
            window_max: 300,
        }
    }

    /// No pacing at all (benchmarks).
    pub fn none() -> Self {
        PaceRules { same_key_gap: Duration::ZERO, any_gap: Duration::ZERO, window: Duration::ZERO, window_max: 0 }
    }
}

#[derive(Debug)]
pub struct Pacer {
    rules: PaceRules,
    state: Mutex<PaceState>,
    /// For [`Pacer::hold`]: per key, when its last call ended.
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

/// A call in progress under [`Pacer::hold`]; dropping it marks the call's end.
#[derive(Debug)]
pub struct PaceGuard(tokio::sync::OwnedMutexGuard<Option<Instant>>);

impl Drop for PaceGuard {
    fn drop(&mut self) {
        *self.0 = Some(Instant::now());
    }
}

#[derive(Debug, Default)]
struct PaceState {
    last_by_key: HashMap<String, Instant>,
    last_any: Option<Instant>,
    /// Reserved slots inside the current window, oldest first.
    recent: VecDeque<Instant>,
}

impl Pacer {
    pub fn new(rules: PaceRules) -> Self {
        Pacer { rules, state: Mutex::new(PaceState::default()), held: Mutex::new(HashMap::new()) }
    }

    /// Waits until a call with `key` may go out, and counts it.
    pub async fn wait(&self, key: &str) {
        let slot = self.reserve(Some(key), Instant::now());
        sleep_until_due(slot).await;
    }

    /// Waits until a call with `key` may go out: after the previous call with this key has ended and the
    /// gap has passed, and within the global rules. Keep the guard until the call has its answer.
    pub async fn hold(&self, key: &str) -> PaceGuard {
        let cell = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.entry(key.to_owned()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None))).clone()
        };
        let last = cell.lock_owned().await;
        if let Some(ended) = *last {
            sleep_until_due(ended + self.rules.same_key_gap).await;
        }
        let slot = self.reserve(None, Instant::now());
        sleep_until_due(slot).await;
        PaceGuard(last)
    }

    /// Reserves the earliest slot at or after `now` (for `key`, if the per-key rule applies here).
    fn reserve(&self, key: Option<&str>, now: Instant) -> Instant {
        let r = &self.rules;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut slot = now;
        if let Some(last) = key.and_then(|k| st.last_by_key.get(k)) {
            slot = slot.max(*last + r.same_key_gap);
        }
        if let Some(last) = st.last_any
            && !r.any_gap.is_zero()
        {
            slot = slot.max(last + r.any_gap);
        }
        if r.window_max > 0 {
            // Under a window rule slots are handed out in order, so the window count stays exact.
            if let Some(last) = st.recent.back() {
                slot = slot.max(*last);
            }
            while st.recent.front().is_some_and(|t| *t + r.window <= slot) {
                st.recent.pop_front();
            }
            if st.recent.len() >= r.window_max
                && let Some(oldest) = st.recent.front()
            {
                slot = slot.max(*oldest + r.window);
                while st.recent.front().is_some_and(|t| *t + r.window <= slot) {
                    st.recent.pop_front();
                }
            }
            st.recent.push_back(slot);
        }
        // Forget keys whose gap has long passed, so the map stays as small as the set of busy keys.
        if st.last_by_key.len() > 1024 {
            let horizon = r.same_key_gap;
            st.last_by_key.retain(|_, t| *t + horizon > now);
        }
        if let Some(key) = key {
            st.last_by_key.insert(key.to_owned(), slot);
        }
        st.last_any = Some(st.last_any.map_or(slot, |l| l.max(slot)));
        slot
    }
}

/// Sleeps until `at`, or not at all when it has come: a timer for "now" still waits for the timer wheel's
/// next millisecond tick (0.5 ms on average, up to 1 ms), on every unpaced command.
async fn sleep_until_due(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn same_key_waits_other_keys_do_not() {
        let p = Pacer::new(PaceRules { same_key_gap: ms(500), ..PaceRules::none() });
        let t0 = Instant::now();
        assert_eq!(p.reserve(Some("/login"), t0), t0);
        assert_eq!(p.reserve(Some("/login"), t0), t0 + ms(500));
        assert_eq!(p.reserve(Some("/login"), t0 + ms(100)), t0 + ms(1000));
        assert_eq!(p.reserve(Some("/device"), t0), t0);
    }

    #[test]
    fn any_gap_spaces_everything() {
        let p = Pacer::new(PaceRules { any_gap: ms(50), ..PaceRules::none() });
        let t0 = Instant::now();
        let slots: Vec<_> = ["a", "b", "c"].iter().map(|k| p.reserve(Some(k), t0)).collect();
        assert_eq!(slots, vec![t0, t0 + ms(50), t0 + ms(100)]);
    }

    #[test]
    fn window_caps_the_rate() {
        let p = Pacer::new(PaceRules { window: ms(1000), window_max: 3, ..PaceRules::none() });
        let t0 = Instant::now();
        let slots: Vec<_> = (0..5).map(|i| p.reserve(Some(&format!("k{i}")), t0)).collect();
        assert_eq!(slots, vec![t0, t0, t0, t0 + ms(1000), t0 + ms(1000)]);
        // Later calls, after the window has moved on, go straight through.
        assert_eq!(p.reserve(Some("k9"), t0 + ms(5000)), t0 + ms(5000));
    }

    #[tokio::test]
    async fn held_calls_run_one_at_a_time_with_the_gap_after_each() {
        let p = Arc::new(Pacer::new(PaceRules { same_key_gap: ms(200), ..PaceRules::none() }));
        let first = p.hold("/a").await;
        let t0 = Instant::now();
        drop(p.hold("/b").await); // another key does not wait for /a
        assert!(t0.elapsed() < ms(200));
        let p2 = p.clone();
        let second = tokio::spawn(async move {
            let _g = p2.hold("/a").await;
            Instant::now()
        });
        tokio::time::sleep(ms(300)).await; // the first call takes a while
        let first_ended = Instant::now();
        drop(first);
        let second_started = second.await.unwrap();
        assert!(second_started >= first_ended + ms(200), "the gap counts from the end of the previous call");
    }

    #[test]
    fn published_http_limits() {
        let p = Pacer::new(PaceRules::cloud_http());
        let t0 = Instant::now();
        let slots: Vec<_> = (0..301).map(|_| p.reserve(Some("/v2/device/thing/status"), t0)).collect();
        assert_eq!(slots[1] - slots[0], ms(500));
        assert_eq!(slots[299] - slots[0], ms(500 * 299));
        // The 301st call is both 500 ms after the 300th and outside the 5-minute window of the first, with
        // room for the first to have reached the cloud as late as the request timeout allows.
        assert!(slots[300] >= slots[0] + Duration::from_secs(300 + 20));
    }
}
