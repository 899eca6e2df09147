//! The vector selectors of a PromQL expression (metric name and the label names it matches on),
//! found by a small scanner: enough to check the monitoring kit's queries against `/metrics`.

/// One vector selector, `metric{label="value", ...}`, as a query names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    /// The label names its matchers use, in order.
    pub labels: Vec<String>,
}

/// PromQL's own words, never metric names (beside [`LABEL_LISTS`]): binary operators, modifiers,
/// and the aggregation operators (which may stand before `by (...)`, so they are not always
/// followed by `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "inf",
    "nan",
];

/// The keywords whose parenthesised list holds label names, not expressions (`group_left` and
/// `group_right` may also stand alone).
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every vector selector of `expr`, in order. A word followed by `(` is a function; words inside
/// `{...}`, `by (...)` and the like are label names; strings, numbers, durations, ranges,
/// comments and Grafana variables (`$job`, `${DS}`, `$__rate_interval`) are skipped. Panics on a
/// selector it cannot read, so a query it does not understand fails loudly rather than passing.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let mut scanner = Scanner {
        text: expr.chars().collect(),
        at: 0,
    };
    let mut found = Vec::new();
    while let Some(c) = scanner.peek() {
        match c {
            '#' => scanner.skip_while(|c| c != '\n'),
            '"' | '\'' | '`' => scanner.skip_string(),
            '$' => scanner.skip_variable(),
            // A range or a subquery: durations (or a Grafana variable) only.
            '[' => scanner.skip_past(']'),
            '{' => panic!("a selector without a metric name in {expr:?}: name the metric"),
            c if c.is_ascii_digit()
                || (c == '.' && scanner.peek_at(1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                scanner.skip_while(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let word = scanner.identifier();
                let next = scanner.next_non_space();
                if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                    scanner.skip_past(')');
                } else if next != Some('(')
                    && !KEYWORDS.contains(&word.as_str())
                    && !LABEL_LISTS.contains(&word.as_str())
                {
                    let labels = if next == Some('{') {
                        scanner.matcher_labels(expr)
                    } else {
                        Vec::new()
                    };
                    found.push(Selector {
                        metric: word,
                        labels,
                    });
                }
            }
            _ => scanner.at += 1,
        }
    }
    found
}

/// A cursor over the expression's characters.
struct Scanner {
    text: Vec<char>,
    at: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.text.get(self.at + ahead).copied()
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
    }

    /// Skips up to and including the next `end`.
    fn skip_past(&mut self, end: char) {
        self.skip_while(|c| c != end);
        self.at += 1;
    }

    /// Skips whitespace and returns the character after it, which stays unread.
    fn next_non_space(&mut self) -> Option<char> {
        self.skip_while(char::is_whitespace);
        self.peek()
    }

    fn identifier(&mut self) -> String {
        let start = self.at;
        self.skip_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        self.text[start..self.at].iter().collect()
    }

    /// Skips a quoted string; backslash escapes in `"` and `'` strings, none in raw `` ` ``.
    fn skip_string(&mut self) {
        let Some(quote) = self.peek() else { return };
        self.at += 1;
        while let Some(c) = self.peek() {
            self.at += 1;
            if c == quote {
                return;
            }
            if c == '\\' && quote != '`' {
                self.at += 1;
            }
        }
    }

    /// Skips a Grafana variable: `$name` or `${name}` (`${name:format}` too).
    fn skip_variable(&mut self) {
        self.at += 1;
        if self.peek() == Some('{') {
            self.skip_past('}');
        } else {
            self.skip_while(|c| c.is_ascii_alphanumeric() || c == '_');
        }
    }

    /// Reads `{name op "value", ...}` from its `{` and returns the names.
    fn matcher_labels(&mut self, expr: &str) -> Vec<String> {
        self.at += 1;
        let mut labels = Vec::new();
        loop {
            match self.next_non_space() {
                Some('}') => {
                    self.at += 1;
                    return labels;
                }
                Some(',') => self.at += 1,
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                    labels.push(self.identifier());
                    self.next_non_space();
                    self.skip_while(|c| matches!(c, '=' | '!' | '~'));
                    assert!(
                        matches!(self.next_non_space(), Some('"' | '\'' | '`')),
                        "a matcher without a quoted value in {expr:?}"
                    );
                    self.skip_string();
                }
                other => panic!("cannot read the matchers of {expr:?} at {other:?}"),
            }
        }
    }
}

#[test]
fn the_scanner_finds_metrics_but_not_functions_label_names_or_grafana_variables() {
    let expr = r#"
        # p99, per endpoint
        histogram_quantile(0.99, sum by (le, endpoint) (
          rate(moat_request_duration_seconds_bucket{job=~"$job", endpoint!~"a|\"b\""}[$__rate_interval])
        ))
        / ignoring (reason) group_left
        sum without (rule) (increase(moat_requests_total{status_class = "5xx"}[5m:1m] offset 1h))
        > 1e-3 and on (instance) up == bool 0 unless max_over_time(moat_edge_agents_connected[1d]) > 0
    "#;
    let found = selectors(expr);
    let names: Vec<(&str, Vec<&str>)> = found
        .iter()
        .map(|s| {
            (
                s.metric.as_str(),
                s.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "moat_request_duration_seconds_bucket",
                vec!["job", "endpoint"]
            ),
            ("moat_requests_total", vec!["status_class"]),
            ("up", vec![]),
            ("moat_edge_agents_connected", vec![]),
        ]
    );
}
