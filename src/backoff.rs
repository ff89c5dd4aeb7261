//! Capped exponential backoff with full jitter, shared by every connection that reconnects by itself
//! (the MQTT session, router pollers, cloud logins and WebSockets).
//!
//! Each failure doubles the ceiling up to `max`; the actual wait is drawn uniformly from
//! `[ceiling / 2, ceiling]` so that many bridges (or many sockets) restarted together spread out instead of
//! hammering a broker or a cloud in lockstep. A success resets the ceiling.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), ceiling: initial, failures: 0 }
    }

    /// The wait before the next attempt; grows the ceiling for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let low = ceiling / 2;
        let span = ceiling.saturating_sub(low);
        let jitter = if span.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..=span) };
        low + jitter
    }

    /// The connection worked: start again from the initial delay.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let ceilings = [1, 2, 4, 8, 16, 30, 30, 30];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_secs(c);
            assert!(*d >= c / 2 && *d <= c, "{d:?} not within [{:?}, {c:?}]", c / 2);
        }
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
