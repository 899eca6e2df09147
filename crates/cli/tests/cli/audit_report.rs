//! `moat audit report` over the audit log of a real session (two endpoints, clients of two CAs,
//! refused handshakes, a 403 by a rule, a 400 for a hostile Host header, reloads that took
//! effect and one that did not) plus hand-written edge events, attacker-shaped lines and lines
//! that are not events: its numbers, in JSON and in the HTML as Chromium shows it, equal what
//! the test counts itself from the same file, with and without --since, --until and
//! --endpoint; the HTML loads nothing, runs nothing and shows every payload as text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::browser::Browser;
use crate::common::Scratch;
use crate::gateway_support::{
    Moat, START_ALL, TestCa, Usage, curl, start_http_upstream, wait_until, write_pair,
    write_server_pki,
};

const CONFIG: &str = r#"
audit_log = "audit.jsonl"

[[endpoints]]
name = "app"
kind = "http"
listen = "127.0.0.1:0"
upstream = "UPSTREAM"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]

[[endpoints.rules]]
name = "admins"
paths = ["/admin/*"]
action = "allow"
include = [{ common_name = "alice" }]

[[endpoints.rules]]
name = "everyone"
action = "allow"
include = [{ valid_certificate = true }]

[[endpoints]]
name = "api"
kind = "http"
listen = "127.0.0.1:0"
upstream = "UPSTREAM"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]
"#;

/// A path no client can send through hyper (`<` is not a URI character), written into the
/// log by hand: the report must still show it as text.
const XSS_PATH: &str = "/<script>alert(1)</script>";
/// A Host header a real client sends; moat refuses it (400) and audits it as sent.
const XSS_HOST: &str = "<script>alert(2)</script>";
/// The CN of a real client certificate.
const XSS_CN: &str = "<script>x</script>";

#[test]
fn the_report_counts_what_the_log_holds_in_json_and_in_chromium_and_renders_payloads_as_text() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let reload_time = generate_audit_log(dir);
    let log = scratch.read("audit.jsonl");

    // Everything: the JSON report, then the HTML page in Chromium, both equal the test's count.
    let everything = Filter::default();
    let expected = count(&log, &everything);
    assert_eq!(expected.totals["handshakes_refused"], 4, "{expected:#?}");
    assert_eq!(expected.totals["reload_failures"], 1, "{expected:#?}");
    assert_eq!(expected.expiring.len(), 2, "{expected:#?}");
    assert_eq!(json_report(&scratch, &[]), expected);
    let html = scratch.moat_ok(&["audit", "report", "audit.jsonl", "--format", "html"]);
    scratch.write("report.html", &html);
    for payload in [XSS_PATH, XSS_HOST, "script>x"] {
        assert!(!html.contains(payload), "{payload} unescaped in the HTML");
    }
    check_in_chromium(dir, &expected, &log);

    // The window and the endpoint filter: the counts change as the test's own count does.
    let since = Filter {
        since: Some(reload_time),
        ..Filter::default()
    };
    let until = Filter {
        until: Some(reload_time),
        ..Filter::default()
    };
    let api = Filter {
        endpoint: Some("api"),
        ..Filter::default()
    };
    let reload = reload_time.format(&Rfc3339).unwrap();
    for (filter, flags) in [
        (&since, vec!["--since", reload.as_str()]),
        (&until, vec!["--until", reload.as_str()]),
        (&api, vec!["--endpoint", "api"]),
    ] {
        let expected_here = count(&log, filter);
        assert_ne!(
            expected_here.totals, expected.totals,
            "{flags:?} changes nothing"
        );
        assert_eq!(json_report(&scratch, &flags), expected_here, "{flags:?}");
    }
    // Times back from now: the whole session is within the last hour, none of it before.
    assert_eq!(json_report(&scratch, &["--since", "1h"]), expected);
    let output = scratch.moat(&["audit", "report", "audit.jsonl", "--until", "1h"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no event in the window") && stderr.contains("check --since"),
        "{stderr}"
    );

    // Markdown, the default, to stdout: the payloads escaped, the numbers there.
    let markdown = scratch.moat_ok(&["audit", "report", "audit.jsonl"]);
    assert!(markdown.starts_with("# moat audit report\n"), "{markdown}");
    let unescaped = markdown
        .match_indices(['<', '>'])
        .find(|(at, _)| !markdown[..*at].ends_with('\\'));
    assert_eq!(unescaped, None, "{markdown}");
    assert!(
        markdown.contains(r"/\<script\>alert(1)\</script\>"),
        "{markdown}"
    );
    let accepted = format!(
        "| Handshakes accepted | {} |",
        expected.totals["handshakes_accepted"]
    );
    assert!(markdown.contains(&accepted), "{markdown}");
}

#[test]
fn bad_files_and_flags_name_the_fix() {
    let scratch = Scratch::new();
    let error = scratch.moat_err(&["audit", "report", "missing.jsonl"]);
    assert!(
        error.contains("missing.jsonl: cannot open the audit log")
            && error.contains("check the file's path"),
        "{error}"
    );
    scratch.write(
        "audit.jsonl",
        "moat: endpoint app listening on https://127.0.0.1:1\n",
    );
    let error = scratch.moat_err(&["audit", "report", "audit.jsonl", "--since", "yesterday"]);
    assert!(
        error.contains("--since \"yesterday\" is not a time")
            && error.contains("RFC 3339")
            && error.contains("7d"),
        "{error}"
    );
    let error = scratch.moat_err(&[
        "audit",
        "report",
        "audit.jsonl",
        "--since",
        "2026-11-02",
        "--until",
        "2026-11-01",
    ]);
    assert!(error.contains("is not before --until"), "{error}");
    // A file of other lines: a report of nothing, and a warning naming the first line.
    let output = scratch.moat(&["audit", "report", "audit.jsonl", "--out", "report.json"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 of 1 lines are not audit events")
            && stderr.contains("audit.jsonl line 1: not JSON"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(&scratch.read("report.json")).unwrap();
    assert_eq!(report["format"], "moat-audit-report/1");
    assert_eq!(report["lines"]["not_events"], 1);
    assert_eq!(crate::common::mode(&scratch.join("report.json")), 0o640);
}

/// Runs a session against `moat start` with two endpoints, appends hand-written lines, and
/// returns the time of the first reload (a cut for --since and --until).
fn generate_audit_log(dir: &Path) -> OffsetDateTime {
    write_server_pki(dir, "Server CA", "server-ca.crt", 1);
    let team = TestCa::new("Team CA");
    let partner = TestCa::new("Partner CA");
    std::fs::write(dir.join("cas.pem"), format!("{}{}", team.pem, partner.pem)).unwrap();
    write_pair(dir, "alice", &team.leaf("alice", Usage::Client, 10));
    write_pair(dir, "bob", &partner.leaf("bob", Usage::Client, 11));
    write_pair(dir, "carol", &team.client_dated("carol", 12, -1, 10));
    write_pair(dir, "xss", &team.leaf(XSS_CN, Usage::Client, 13));
    write_pair(dir, "expired", &team.client_dated("expired", 14, -30, -1));
    let foreign = TestCa::new("Foreign CA");
    write_pair(dir, "mallory", &foreign.leaf("mallory", Usage::Client, 15));
    let config = CONFIG.replace("UPSTREAM", &start_http_upstream().to_string());
    std::fs::write(dir.join("moat.toml"), &config).unwrap();
    let mut moat = Moat::start(dir, &START_ALL, 2);
    let (app, api) = (moat.endpoints[0].1.port(), moat.endpoints[1].1.port());

    // app: alice twice on one connection (one handshake, two requests, /admin allowed), bob
    // allowed and refused by the rule, carol, the script CN, alice with a hostile Host header;
    // refused: mallory (unknown CA), an expired certificate.
    assert_eq!(
        get(dir, app, Some("alice"), &["/", "/admin/x"], &[]),
        "200200"
    );
    assert_eq!(get(dir, app, Some("bob"), &["/"], &[]), "200");
    assert_eq!(get(dir, app, Some("bob"), &["/admin/x"], &[]), "403");
    assert_eq!(get(dir, app, Some("carol"), &["/"], &[]), "200");
    assert_eq!(get(dir, app, Some("xss"), &["/"], &[]), "200");
    let host = format!("Host: {XSS_HOST}");
    // Over HTTP/1.1: h2 itself refuses such an :authority before moat sees the request.
    let hostile = ["--http1.1", "-H", &host];
    assert_eq!(get(dir, app, Some("alice"), &["/"], &hostile), "400");
    for client in ["mallory", "expired"] {
        assert_eq!(get(dir, app, Some(client), &["/"], &[]), "000", "{client}");
    }
    // With rules a certificate is asked for, not required: the rule refuses (403).
    assert_eq!(get(dir, app, None, &["/"], &[]), "403");
    // api: no rules, so a certificate is required at the handshake.
    assert_eq!(get(dir, api, Some("alice"), &["/"], &[]), "200");
    assert_eq!(get(dir, api, Some("bob"), &["/"], &[]), "200");
    assert_eq!(get(dir, api, None, &["/"], &[]), "000");
    let audit = dir.join("audit.jsonl");
    let lines_with = |needle: &str| {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    };
    // 12 handshakes and 10 requests so far.
    wait_until("the session's events", Duration::from_secs(10), || {
        lines_with("\"event\":") == 22
    });

    // A reload that takes effect, traffic after it, and one refused (moat.toml broken).
    moat.signal("HUP");
    wait_until("the reload's event", Duration::from_secs(10), || {
        lines_with("config_reloaded") == 1
    });
    assert_eq!(get(dir, app, Some("carol"), &["/"], &[]), "200");
    assert_eq!(get(dir, api, Some("mallory"), &["/"], &[]), "000");
    std::fs::write(dir.join("moat.toml"), "[[endpoints]\nthis is not TOML").unwrap();
    moat.signal("HUP");
    wait_until(
        "the refused reload's event",
        Duration::from_secs(10),
        || lines_with("config_reloaded") == 2,
    );
    wait_until("every event", Duration::from_secs(10), || {
        lines_with("\"event\":") == 27
    });
    moat.terminate();
    moat.wait_exit(Duration::from_secs(10));
    let reload_time = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| event["event"] == "config_reloaded")
        .map(|event| time_of(&event))
        .unwrap();

    // What a moat edge and stranger sources add: agents, a published endpoint, a request
    // whose path carries a script, moat's own messages on a shared stdout, a cut line and
    // an event from a later version.
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let mut extra = [
        json!({"event": "agent_connected", "time": now, "agent": "laptop",
               "agent_address": "203.0.113.9:51544", "agent_serial": "5c0e"}),
        json!({"event": "endpoint_published", "time": now, "hostname": "app.tunnel.test",
               "agent": "laptop", "kind": "http", "terminate_at": "edge", "pool": false}),
        json!({"event": "agent_disconnected", "time": now, "agent": "laptop",
               "agent_address": "203.0.113.9:51544", "reason": "heartbeat_timeout",
               "detail": "the peer answered no heartbeat within 15000 ms"}),
        json!({"event": "endpoint_removed", "time": now, "hostname": "app.tunnel.test",
               "agent": "laptop", "reason": "agent_disconnected"}),
        json!({"event": "http_request", "time": now, "endpoint": "app",
               "peer": "127.0.0.1:1", "method": "GET", "host": "localhost", "path": XSS_PATH,
               "status": 403, "rule": "admins", "client_subject": "CN=bob", "upstream_ms": null,
               "duration_ms": 0.2, "bytes_in": 0, "bytes_out": 120}),
        json!({"event": "from_a_later_moat", "time": now}),
    ]
    .map(|event| event.to_string())
    .join("\n");
    extra.push_str("\nmoat: endpoint app listening on https://127.0.0.1:8443\n");
    extra.push_str("{\"event\":\"tls_handshake\",\"time\":\n");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&audit)
        .unwrap();
    std::io::Write::write_all(&mut file, extra.as_bytes()).unwrap();
    reload_time
}

/// curl to each of `paths` on 127.0.0.1:`port` as `client` in one run (one connection);
/// returns the statuses written one after the other (`000` for a refused handshake).
fn get(dir: &Path, port: u16, client: Option<&str>, paths: &[&str], extra: &[&str]) -> String {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let identity = client.map(|name| (format!("{name}.crt"), format!("{name}.key")));
    let mut args = vec![
        "--cacert",
        "server-ca.crt",
        "--resolve",
        &resolve,
        "-w",
        "%{http_code}",
    ];
    if let Some((cert, key)) = &identity {
        args.extend(["--cert", cert, "--key", key]);
    }
    args.extend_from_slice(extra);
    let urls: Vec<String> = paths
        .iter()
        .map(|path| format!("https://localhost:{port}{path}"))
        .collect();
    // Each -o takes the next URL's body.
    for url in &urls {
        args.extend(["-o", "/dev/null", url]);
    }
    curl(dir, &args).1
}

fn time_of(event: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(event["time"].as_str().unwrap(), &Rfc3339).unwrap()
}

/// The report's window.
#[derive(Default)]
struct Filter {
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    endpoint: Option<&'static str>,
}

/// The numbers compared: counted by the test from the log, read from the JSON report, read
/// from the HTML page in Chromium.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    /// The report's headline numbers, by their JSON names.
    totals: BTreeMap<String, u64>,
    requests_by_class: BTreeMap<String, u64>,
    refusals_by_reason: BTreeMap<String, u64>,
    /// Subject → (accepted handshakes, requests).
    clients: BTreeMap<String, (u64, u64)>,
    /// Fingerprints of the client certificates near expiry.
    expiring: BTreeSet<String>,
    /// Agent → (sessions opened, ended).
    agents: BTreeMap<String, (u64, u64)>,
    not_events: u64,
}

/// The test's own count of `log` over `filter`: a few lines per number, from the events'
/// fields as the README describes them.
fn count(log: &str, filter: &Filter) -> Counts {
    let mut counts = Counts::default();
    let now = OffsetDateTime::now_utc();
    let horizon = filter.until.unwrap_or(now) + time::Duration::days(30);
    let mut total = |name: &str| *counts.totals.entry(name.to_owned()).or_default() += 1;
    let mut classes = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut clients: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut expiring = BTreeSet::new();
    let mut agents: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut not_events = 0;
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            not_events += 1;
            continue;
        };
        let time = time_of(&event);
        let endpoint = event["endpoint"].as_str().or(event["hostname"].as_str());
        if filter.since.is_some_and(|since| time < since)
            || filter.until.is_some_and(|until| time >= until)
            || filter
                .endpoint
                .is_some_and(|wanted| endpoint.is_some_and(|name| name != wanted))
        {
            continue;
        }
        match event["event"].as_str().unwrap() {
            "tls_handshake" => {
                let accepted = event["outcome"] == "accepted";
                total(if accepted {
                    "handshakes_accepted"
                } else {
                    "handshakes_refused"
                });
                if !accepted {
                    *reasons
                        .entry(event["reason"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
                let certificate = &event["client_certificate"];
                if let Some(subject) = certificate["subject"].as_str() {
                    clients.entry(subject.to_owned()).or_default().0 += u64::from(accepted);
                    let not_after =
                        OffsetDateTime::parse(certificate["not_after"].as_str().unwrap(), &Rfc3339)
                            .unwrap();
                    if not_after < horizon {
                        let fingerprint = certificate["fingerprint_sha256"].as_str().unwrap();
                        expiring.insert(fingerprint.to_owned());
                    }
                }
            }
            "http_request" => {
                total("requests");
                let status = event["status"].as_u64().unwrap();
                *classes.entry(format!("{}xx", status / 100)).or_default() += 1;
                if (400..500).contains(&status) && status != 499 && event["upstream_ms"].is_null() {
                    total("requests_refused");
                }
                if let Some(subject) = event["client_subject"].as_str() {
                    clients.entry(subject.to_owned()).or_default().1 += 1;
                }
            }
            "config_reloaded" => {
                total("reloads");
                if event["outcome"] == "failure" {
                    total("reload_failures");
                }
            }
            "agent_connected" => agents.entry(agent(&event)).or_default().0 += 1,
            "agent_disconnected" => agents.entry(agent(&event)).or_default().1 += 1,
            _ => {}
        }
    }
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        classes.entry(class.to_owned()).or_insert(0);
    }
    for name in [
        "handshakes_accepted",
        "handshakes_refused",
        "requests",
        "requests_refused",
        "reloads",
        "reload_failures",
    ] {
        counts.totals.entry(name.to_owned()).or_insert(0);
    }
    counts
        .totals
        .insert("clients".to_owned(), clients.len() as u64);
    counts
        .totals
        .insert("expiring_certificates".to_owned(), expiring.len() as u64);
    Counts {
        requests_by_class: classes,
        refusals_by_reason: reasons,
        clients,
        expiring,
        agents,
        not_events,
        ..counts
    }
}

fn agent(event: &Value) -> String {
    event["agent"].as_str().unwrap().to_owned()
}

/// The numbers of `moat audit report audit.jsonl --format json FLAGS`.
fn json_report(scratch: &Scratch, flags: &[&str]) -> Counts {
    let mut args = vec!["audit", "report", "audit.jsonl", "--format", "json"];
    args.extend_from_slice(flags);
    let report: Value = serde_json::from_str(&scratch.moat_ok(&args)).unwrap();
    let number = |value: &Value| value.as_u64().unwrap();
    let map = |list: &Value, key: &str| -> BTreeMap<String, u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item[key].as_str().unwrap().to_owned(),
                    number(&item["count"]),
                )
            })
            .collect()
    };
    let mut totals: BTreeMap<String, u64> = [
        "handshakes_accepted",
        "handshakes_refused",
        "requests",
        "requests_refused",
        "clients",
        "reloads",
        "reload_failures",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), number(&report["totals"][name])))
    .collect();
    let expiring: BTreeSet<String> = report["expiring_certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|certificate| {
            certificate["fingerprint_sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    totals.insert("expiring_certificates".to_owned(), expiring.len() as u64);
    Counts {
        totals,
        requests_by_class: report["totals"]["requests_by_class"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(class, count)| (class.clone(), number(count)))
            .collect(),
        refusals_by_reason: map(&report["refusals_by_reason"], "reason"),
        clients: report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|client| {
                let subject = client["subject"].as_str().unwrap().to_owned();
                (
                    subject,
                    (
                        number(&client["handshakes_accepted"]),
                        number(&client["requests"]),
                    ),
                )
            })
            .collect(),
        expiring,
        agents: report["edge"]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| {
                (
                    agent["agent"].as_str().unwrap().to_owned(),
                    (number(&agent["connects"]), number(&agent["disconnects"])),
                )
            })
            .collect(),
        not_events: number(&report["lines"]["not_events"]),
    }
}

/// Reads a table of the page as `{row key: {field: count}}` (rows by `data-key`, numbers by
/// `data-field` and `data-count`); an empty table is a paragraph and reads as no rows.
const TABLE_COUNTS: &str = "
    const rows = {};
    for (const row of document.querySelectorAll('table#' + arguments[0] + ' tbody tr')) {
        const cells = {};
        for (const cell of row.querySelectorAll('[data-count]')) {
            cells[cell.dataset.field] = Number(cell.dataset.count);
        }
        rows[row.dataset.key] = cells;
    }
    return rows;";

/// The page's numbers as [`Counts`].
fn html_counts(browser: &Browser) -> Counts {
    let totals = browser.script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('[data-total]'), \
         element => [element.dataset.total, Number(element.dataset.count)]));",
        Value::Null,
    );
    // Days left may be negative; no other number is.
    let table = |id: &str| -> BTreeMap<String, BTreeMap<String, i64>> {
        serde_json::from_value(browser.script(TABLE_COUNTS, Value::from(id))).unwrap()
    };
    let pairs = |id: &str, first: &str, second: &str| -> BTreeMap<String, (u64, u64)> {
        table(id)
            .into_iter()
            .map(|(key, cells)| (key, (cells[first] as u64, cells[second] as u64)))
            .collect()
    };
    let column = |id: &str, field: &str| -> BTreeMap<String, u64> {
        table(id)
            .into_iter()
            .map(|(key, cells)| (key, cells[field] as u64))
            .collect()
    };
    let input = table("skipped-lines");
    Counts {
        totals: serde_json::from_value(totals).unwrap(),
        requests_by_class: column("requests-by-class", "count"),
        refusals_by_reason: column("refusals-by-reason", "count"),
        clients: pairs("clients", "handshakes_accepted", "requests"),
        expiring: table("expiring-certificates").into_keys().collect(),
        agents: pairs("agents", "connects", "disconnects"),
        not_events: input.len() as u64,
    }
}

/// Opens `dir/report.html` in Chromium: no console error, nothing loaded, its numbers equal
/// `expected`; the payloads of `log` are text; CSP blocks a load even when a script tries;
/// keyboard and a 360 px window work; screenshots are left as artifacts.
fn check_in_chromium(dir: &Path, expected: &Counts, log: &str) {
    let browser = Browser::start();
    browser.open_file(&dir.join("report.html"));
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    assert_eq!(browser.resources(), Vec::<String>::new());
    assert_eq!(&html_counts(&browser), expected);

    // Every payload is text where it is shown, and nothing of it became an element or ran.
    let xss_subject = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|event| {
            let subject = event["client_certificate"]["subject"].as_str()?;
            subject.contains("script").then(|| subject.to_owned())
        })
        .unwrap();
    assert!(xss_subject.contains(r"\<script\>"), "{xss_subject}");
    let row_text = |table: &str, field: &str| -> Vec<String> {
        let texts = browser.script(
            "return Array.from(document.querySelectorAll('table#' + arguments[0][0] + \
             ' [data-field=' + arguments[0][1] + ']'), cell => cell.textContent);",
            json!([table, field]),
        );
        serde_json::from_value(texts).unwrap()
    };
    assert!(row_text("clients", "subject").contains(&xss_subject));
    assert!(row_text("refused-requests", "path").contains(&XSS_PATH.to_owned()));
    assert!(row_text("refused-requests", "host").contains(&XSS_HOST.to_owned()));
    assert_eq!(browser.count("script"), 0);
    let injected = browser.script(
        "return Array.from(document.querySelectorAll('*'), e => e.tagName)\
         .filter(name => /script/i.test(name));",
        Value::Null,
    );
    assert_eq!(injected, json!([]));
    assert_eq!(browser.alert(), None);

    browser.screenshot_full_page("audit-report", 8000);

    // Keyboard: the first Tab reaches the section links, with a visible focus ring; the
    // tables' scrolling regions take the focus too.
    let first = browser.tab(1);
    assert!(first.starts_with("a \"Summary\""), "{first}");
    let outline = browser.script(
        "return getComputedStyle(document.activeElement).outlineStyle;",
        Value::Null,
    );
    assert_ne!(outline, "none");
    let mut reached_table = false;
    for _ in 0..30 {
        if browser.tab(1).starts_with("div.table") {
            reached_table = true;
            break;
        }
    }
    assert!(reached_table, "no table region takes the keyboard focus");

    // A phone's width: the page does not scroll sideways (wide tables scroll in their box).
    browser.resize(360, 800);
    let overflow = browser.script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
        Value::Null,
    );
    let [scroll_width, client_width]: [u64; 2] = serde_json::from_value(overflow).unwrap();
    assert!(
        scroll_width <= client_width,
        "the page is {scroll_width}px wide in a {client_width}px window"
    );
    browser.screenshot("audit-report-narrow");
    assert_eq!(browser.console_errors(), Vec::<String>::new());

    // The Content-Security-Policy holds even against a script that gets in: a load from a
    // server on this machine is refused before any connection is made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let violations = browser.script(
        "return new Promise(resolve => {
            const seen = [];
            document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
            const image = document.createElement('img');
            image.src = arguments[0] + '/image.png';
            document.body.appendChild(image);
            fetch(arguments[0] + '/data').catch(() => {});
            setTimeout(() => resolve(seen.sort()), 500);
        });",
        Value::from(url),
    );
    assert_eq!(violations, json!(["connect-src", "img-src"]));
    assert!(
        listener.accept().is_err(),
        "the browser connected to a server despite the page's CSP"
    );
}
