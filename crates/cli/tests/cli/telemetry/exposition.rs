//! What `/metrics` serves: a strict parser of the Prometheus / OpenMetrics text, and scraping it.

use crate::gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use gateway_support::{Moat, curl};

/// `moat: metrics listening on http://ADDR` → ADDR.
pub(crate) fn metrics_address(moat: &Moat) -> SocketAddr {
    moat.stdout
        .iter()
        .find_map(|line| line.strip_prefix("moat: metrics listening on http://"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", moat.stdout))
        .parse()
        .unwrap()
}

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A strict parser of the Prometheus / OpenMetrics text format as far as moat uses it: every
/// sample belongs to a family declared by `# TYPE`, label values are quoted with escapes, and
/// the text ends with `# EOF`. Panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition must end with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let family = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            let rest = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            match keyword {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&rest),
                        "unknown type in {line}"
                    );
                    families.insert(family.to_owned(), rest.to_owned());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let sample = parse_sample(line);
        let declared = families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}"))
        });
        assert!(declared, "sample of an undeclared family: {line}");
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let (start, first) = chars
                .next()
                .unwrap_or_else(|| panic!("open labels: {line}"));
            if first == '}' {
                rest = &inner[start + 1..];
                break;
            }
            let mut key = String::from(first);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "unquoted value: {line}"
            );
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some(c) => value.push(c),
                    None => panic!("unterminated value: {line}"),
                }
            }
            assert!(
                labels.insert(key, value).is_none(),
                "repeated label: {line}"
            );
            if let Some((_, ',')) = chars.peek() {
                chars.next();
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The value of the sample `name` whose labels include all of `labels`; fails if not exactly one.
pub(super) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

pub(super) fn scrape(dir: &Path, address: SocketAddr, path: &str) -> (String, String) {
    let url = format!("http://{address}{path}");
    let (code, body, stderr) = curl(dir, &["-i", &url]);
    assert_eq!(code, 0, "curl {url}: {stderr}");
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// Waits (at most 10 s) until every connection has closed and returns the parsed metrics.
pub(crate) fn settled_metrics(dir: &Path, address: SocketAddr) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (head, body) = scrape(dir, address, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("application/openmetrics-text"), "{head}");
        let samples = parse_exposition(&body);
        let open: f64 = samples
            .iter()
            .filter(|s| s.name == "moat_open_connections")
            .map(|s| s.value)
            .sum();
        if open == 0.0 || Instant::now() > deadline {
            return samples;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
