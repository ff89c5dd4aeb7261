//! The faults the soak injects, and the schedule that injects them at random (seeded) times.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The cloud closes every WebSocket.
    WsDrop,
    /// The next handshake is refused with 406 ("logged in elsewhere"), and the socket is dropped.
    Handshake406,
    /// Every access token expires (HTTP 402, WebSocket handshake 402); sometimes with a drop.
    TokenExpired,
    /// Acks (and the device pushes that follow them) come later than the command timeout, for a while.
    AckDelay,
    /// A device goes offline and comes back.
    DeviceOffline,
    /// The router forgets every session.
    RouterSessionExpired,
    /// The router is unreachable for a while.
    RouterDown,
    /// The router answers truncated JSON (or HTTP 500) for a while.
    RouterMalformed,
    /// The MQTT broker is killed (SIGKILL, retained messages lost) and started again.
    BrokerKill,
    /// Home Assistant restarts: `online` on `homeassistant/status`.
    HaBirth,
}

pub const ALL: [Fault; 10] = [
    Fault::WsDrop,
    Fault::Handshake406,
    Fault::TokenExpired,
    Fault::AckDelay,
    Fault::DeviceOffline,
    Fault::RouterSessionExpired,
    Fault::RouterDown,
    Fault::RouterMalformed,
    Fault::BrokerKill,
    Fault::HaBirth,
];

/// Relative frequencies after every fault has been injected once.
fn weight(f: Fault) -> u32 {
    match f {
        Fault::WsDrop => 10,
        Fault::Handshake406 => 3,
        Fault::TokenExpired => 6,
        Fault::AckDelay => 8,
        Fault::DeviceOffline => 12,
        Fault::RouterSessionExpired => 8,
        Fault::RouterDown => 6,
        Fault::RouterMalformed => 6,
        Fault::BrokerKill => 3,
        Fault::HaBirth => 6,
    }
}

/// When the next faults happen and which.
pub struct Schedule {
    first_round: Vec<Fault>,
    mean_gap: Duration,
    pub injected: BTreeMap<Fault, usize>,
}

impl Schedule {
    /// Every fault once in a random order, then random faults by weight; gaps exponential around `mean_gap`.
    pub fn new(rng: &mut StdRng, mean_gap: Duration) -> Schedule {
        let mut first_round = ALL.to_vec();
        first_round.shuffle(rng);
        first_round.reverse();
        Schedule { first_round, mean_gap, injected: BTreeMap::new() }
    }

    pub fn next_gap(&self, rng: &mut StdRng) -> Duration {
        let u: f64 = rng.random_range(0.0001..1.0);
        let gap = -u.ln() * self.mean_gap.as_secs_f64();
        Duration::from_secs_f64(gap.clamp(0.5, self.mean_gap.as_secs_f64() * 4.0))
    }

    pub fn next_fault(&mut self, rng: &mut StdRng) -> Fault {
        let fault = match self.first_round.pop() {
            Some(f) => f,
            None => {
                let total: u32 = ALL.iter().map(|f| weight(*f)).sum();
                let mut roll = rng.random_range(0..total);
                *ALL.iter()
                    .find(|f| {
                        if roll < weight(**f) {
                            true
                        } else {
                            roll -= weight(**f);
                            false
                        }
                    })
                    .unwrap_or(&Fault::WsDrop)
            }
        };
        *self.injected.entry(fault).or_default() += 1;
        fault
    }

    pub fn count(&self, f: Fault) -> usize {
        self.injected.get(&f).copied().unwrap_or(0)
    }
}
