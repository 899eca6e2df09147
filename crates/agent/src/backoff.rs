//! The reconnect delay: exponential from 0.5 s to 30 s, with jitter so a fleet of agents does
//! not reconnect to a restarted edge in lockstep.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(30);

/// The delays between reconnection attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    /// Keys the jitter; differs per process (std's hasher keys are random).
    jitter: std::collections::hash_map::RandomState,
    attempts: u64,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: FIRST,
            jitter: std::collections::hash_map::RandomState::new(),
            attempts: 0,
        }
    }

    /// After a session that worked: start again from the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }

    /// The next delay: between half and all of the current step, which then doubles up to 30 s.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(LONGEST);
        self.attempts += 1;
        let mut hasher = self.jitter.build_hasher();
        hasher.write_u64(self.attempts);
        let fraction = (hasher.finish() % 1000) as f64 / 1000.0;
        step.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_half_a_second_to_thirty_seconds_with_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0];
        for (delay, step) in delays.iter().zip(steps) {
            let seconds = delay.as_secs_f64();
            assert!(
                seconds >= step / 2.0 && seconds <= step,
                "{seconds} for step {step}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST);
    }
}
