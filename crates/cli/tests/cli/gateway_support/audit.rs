//! Reading moat's audit log: the JSON events it wrote to a file.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Waits (at most 10 s) until the audit file holds `count` events, and returns them parsed.
pub fn audit_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines
                .iter()
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"))
                })
                .collect();
        }
        thread::sleep(Duration::from_millis(50));
    }
}
