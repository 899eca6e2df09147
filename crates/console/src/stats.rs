//! The status page's numbers: the request rate over the last minute and latency percentiles.

use std::collections::VecDeque;

/// Seconds a rate is counted over.
const WINDOW_SECONDS: u64 = 60;

/// Requests finished per second over the last [`WINDOW_SECONDS`].
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (second since the Unix epoch, requests finished in it), oldest first.
    seconds: VecDeque<(u64, u64)>,
    total: u64,
}

impl RateWindow {
    /// Counts one request finished at `second`.
    pub(crate) fn record(&mut self, second: u64) {
        self.total += 1;
        match self.seconds.back_mut() {
            Some((last, count)) if *last == second => *count += 1,
            _ => self.seconds.push_back((second, 1)),
        }
        self.forget_before(second);
    }

    fn forget_before(&mut self, now: u64) {
        while self
            .seconds
            .front()
            .is_some_and(|(second, _)| second + WINDOW_SECONDS <= now)
        {
            self.seconds.pop_front();
        }
    }

    /// Requests finished in the minute up to `now`.
    pub(crate) fn last_minute(&mut self, now: u64) -> u64 {
        self.forget_before(now);
        self.seconds.iter().map(|(_, count)| count).sum()
    }

    /// Every request counted since start.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

/// The `q`-quantile (0..=1) of `sorted` by the nearest-rank method; `None` when empty.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_the_last_minute_only() {
        let mut rate = RateWindow::default();
        for second in [100, 100, 101, 150, 159] {
            rate.record(second);
        }
        assert_eq!(rate.last_minute(159), 5);
        assert_eq!(rate.last_minute(160), 3, "second 100 left the window");
        assert_eq!(rate.last_minute(300), 0);
        assert_eq!(rate.total(), 5);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(50.0));
        assert_eq!(quantile(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile(&sorted, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.5), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
