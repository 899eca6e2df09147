//! Counts completed requests and their latencies, and prints the one-line result.

use std::time::Duration;

use hdrhistogram::Histogram;

/// One worker's results; workers' tallies are merged at the end.
pub struct Tally {
    latencies_us: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            // 1 µs to 100 s at 3 significant digits.
            latencies_us: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("static histogram bounds are valid"),
            errors: 0,
            first_error: None,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies_us.saturating_record(micros.max(1));
    }

    pub fn error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }

    pub fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latencies_us.add(&other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Prints `rps=… p50_ms=… p99_ms=… requests=… errors=… seconds=…` on stdout and the first
    /// error on stderr; fails when any request failed or none succeeded.
    ///
    /// No error is tolerated: on loopback a healthy gateway answers every request (a run stops
    /// sending at its deadline and lets requests in flight finish, so the end of a run makes no
    /// errors either). A failed request costs a 10 ms back-off instead of a round trip, so even a
    /// small share of errors changes the rate and latencies the report compares; a figure from
    /// such a run is not one the harness should print as a result.
    pub fn report(&self, elapsed: Duration) -> anyhow::Result<()> {
        let requests = self.latencies_us.len();
        let seconds = elapsed.as_secs_f64();
        let quantile_ms = |q: f64| self.latencies_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "rps={:.0} p50_ms={:.2} p99_ms={:.2} requests={} errors={} seconds={:.2}",
            requests as f64 / seconds,
            quantile_ms(0.50),
            quantile_ms(0.99),
            requests,
            self.errors,
            seconds
        );
        if let Some(error) = &self.first_error {
            eprintln!("loadgen: {} errors; the first: {error}", self.errors);
        }
        anyhow::ensure!(requests > 0, "no request succeeded");
        anyhow::ensure!(
            self.errors == 0,
            "{} of {} requests failed; the figures above are not a measurement",
            self.errors,
            requests + self.errors
        );
        Ok(())
    }
}
