//! The charts' numbers: the last hour in one-minute buckets of requests by status class,
//! refusals by reason and accepted handshakes, kept in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use moat_telemetry::Event;
use serde_json::{Value, json};

/// Buckets kept: one an hour of minutes.
pub(crate) const BUCKETS: usize = 60;
/// Seconds a bucket covers.
pub(crate) const BUCKET_SECONDS: i64 = 60;

/// One minute's counts.
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// The minute (Unix seconds / 60) it counts; a bucket of an older minute is reused.
    minute: i64,
    /// Requests by status class (`2xx`…).
    requests: BTreeMap<&'static str, u64>,
    /// Refused handshakes by reason.
    refusals: BTreeMap<&'static str, u64>,
    /// Accepted handshakes.
    handshakes: u64,
}

/// The hour of buckets, a ring indexed by minute.
#[derive(Debug)]
pub(crate) struct Charts {
    buckets: Mutex<Vec<Bucket>>,
}

impl Default for Charts {
    fn default() -> Charts {
        Charts {
            buckets: Mutex::new(vec![Bucket::default(); BUCKETS]),
        }
    }
}

impl Charts {
    /// Counts `event` in the bucket of `now` (Unix seconds).
    pub fn record(&self, event: &Event<'_>, now: i64) {
        let minute = now.div_euclid(BUCKET_SECONDS);
        let mut buckets = self.lock();
        // rem_euclid of a positive modulus is in 0..BUCKETS.
        let bucket = &mut buckets[minute.rem_euclid(BUCKETS as i64) as usize];
        if bucket.minute != minute {
            *bucket = Bucket {
                minute,
                ..Bucket::default()
            };
        }
        match event {
            Event::RequestFinished(request) => {
                *bucket
                    .requests
                    .entry(status_class(request.status))
                    .or_default() += 1;
            }
            Event::HandshakeRefused { reason, .. } => {
                *bucket.refusals.entry(reason.as_str()).or_default() += 1;
            }
            Event::HandshakeAccepted { .. } => bucket.handshakes += 1,
            _ => {}
        }
    }

    /// The hour up to `now` as JSON: `minutes` (each bucket's start, Unix seconds), and per
    /// series one number per bucket, oldest first: `requests` by status class, `refusals` by
    /// reason, `handshakes_per_second` (the minute's accepted handshakes / 60).
    pub fn snapshot(&self, now: i64) -> Value {
        let current = now.div_euclid(BUCKET_SECONDS);
        let first = current - BUCKETS as i64 + 1;
        let buckets = self.lock();
        let in_window = |minute: i64| buckets.iter().find(|bucket| bucket.minute == minute);
        let mut requests: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut refusals: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut handshakes = Vec::with_capacity(BUCKETS);
        for (index, minute) in (first..=current).enumerate() {
            let bucket = in_window(minute);
            for (series, counts) in [
                (&mut requests, bucket.map(|bucket| &bucket.requests)),
                (&mut refusals, bucket.map(|bucket| &bucket.refusals)),
            ] {
                for (name, count) in counts.into_iter().flatten() {
                    series.entry(name).or_insert_with(|| vec![0; BUCKETS])[index] = *count;
                }
            }
            let accepted = bucket.map_or(0, |bucket| bucket.handshakes);
            handshakes.push(accepted as f64 / BUCKET_SECONDS as f64);
        }
        json!({
            "bucket_seconds": BUCKET_SECONDS,
            "minutes": (first..=current).map(|minute| minute * BUCKET_SECONDS).collect::<Vec<_>>(),
            "requests": requests,
            "refusals": refusals,
            "handshakes_per_second": handshakes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `2xx` for 204, and so on; a status outside 100–599 is `other`.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use moat_telemetry::HandshakeRefusal;
    use moat_telemetry::presented::Presented;

    use super::*;

    fn refusal(charts: &Charts, reason: HandshakeRefusal, now: i64) {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let presented = Presented::default();
        let event = Event::HandshakeRefused {
            endpoint: "app",
            peer,
            reason,
            presented: &presented,
        };
        charts.record(&event, now);
    }

    #[test]
    fn refusals_land_in_their_minute_and_an_hour_later_they_are_gone() {
        let charts = Charts::default();
        // A minute's first second.
        let start = 1_800_000_000;
        assert_eq!(start % BUCKET_SECONDS, 0);
        refusal(&charts, HandshakeRefusal::ConnectionLimit, start);
        refusal(&charts, HandshakeRefusal::ConnectionLimit, start + 59);
        refusal(&charts, HandshakeRefusal::ConnectionLimit, start + 60);

        let hour = charts.snapshot(start + 60);
        let counts = &hour["refusals"]["connection_limit"];
        assert_eq!(counts[BUCKETS - 2], 2, "{hour}");
        assert_eq!(counts[BUCKETS - 1], 1, "{hour}");
        assert_eq!(hour["minutes"][BUCKETS - 1], start + 60);

        // 60 minutes on, the first minute's bucket is out of the window, then reused.
        let later = charts.snapshot(start + 60 * 60);
        let counts = &later["refusals"]["connection_limit"];
        assert_eq!(counts[0], 1, "{later}");
        assert_eq!(counts[BUCKETS - 1], 0, "{later}");
        refusal(&charts, HandshakeRefusal::ConnectionLimit, start + 60 * 60);
        let reused = charts.snapshot(start + 60 * 60);
        assert_eq!(
            reused["refusals"]["connection_limit"][BUCKETS - 1],
            1,
            "{reused}"
        );
    }
}
