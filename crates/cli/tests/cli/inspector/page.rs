//! The inspector's page in headless Chromium: a request made with curl and a client
//! certificate appears with its client's subject without a reload; its detail shows the
//! certificate and TLS session; a replay with a changed header reaches the upstream changed
//! (and as the original client); a filter by client subject hides the other rows; markup in a
//! header, a path and a certificate CN shows as text; refused handshakes and the status page
//! update live; the page loads only its own files, works by keyboard and at 360 px. Screenshots
//! of each view are test artifacts.

use std::time::Duration;

use serde_json::Value;
use thirtyfour::prelude::*;

use super::{Inspected, XSS_CN};
use crate::browser::Browser;
use crate::common::Scratch;
use crate::gateway_support::wait_until;

/// A header value and a path that are markup.
const XSS_HEADER: &str = "<img src=x onerror=alert('header')>";
const XSS_PATH: &str = "/x/%3Cscript%3Ealert('path')%3C/script%3E";

/// Clicks the element `selector` names, as a person would.
fn click(browser: &Browser, selector: &str) {
    browser
        .block_on(async {
            browser
                .driver()
                .find(By::Css(selector))
                .await?
                .click()
                .await
        })
        .unwrap_or_else(|error| panic!("click {selector}: {error}"));
}

/// Types `text` into the field `selector` names (after emptying it).
fn type_into(browser: &Browser, selector: &str, text: &str) {
    browser
        .block_on(async {
            let field = browser.driver().find(By::Css(selector)).await?;
            field.clear().await?;
            field.send_keys(text).await
        })
        .unwrap_or_else(|error| panic!("type into {selector}: {error}"));
}

/// Waits up to 10 s for `selector` to match `count` elements.
fn wait_for_count(browser: &Browser, selector: &str, count: usize) {
    wait_until(
        &format!("{count} × {selector}"),
        Duration::from_secs(10),
        || browser.count(selector) == count,
    );
}

/// The text of each cell `column` (1-based) of the request rows.
fn column(browser: &Browser, column: usize) -> Vec<String> {
    let texts = browser.script(
        "return Array.from(document.querySelectorAll('#request-rows tr td:nth-child(' + arguments[0] + ')'), td => td.textContent);",
        Value::from(column),
    );
    serde_json::from_value(texts).unwrap()
}

#[test]
fn the_inspector_page_shows_who_made_each_request_live_and_replays_it() {
    let scratch = Scratch::new();
    let inspected = Inspected::start(scratch.path(), &[]);
    let browser = Browser::start();
    browser.open(&format!("{}/", inspected.inspector));
    wait_until("the live feed", Duration::from_secs(10), || {
        browser.text("#live") == "live"
    });
    assert_eq!(browser.count("#request-rows tr"), 0);

    // Requests arrive while the page is open: rows appear without a reload.
    let (status, _) = inspected.request(Some("alice"), "/hello", &["-H", "X-Mode: original"]);
    assert_eq!(status, 200);
    wait_for_count(&browser, "#request-rows tr", 1);
    assert_eq!(column(&browser, 2), ["CN=alice"]);
    assert_eq!(browser.text("#request-rows tr td.status"), "200");
    inspected.request(Some("bob"), "/admin/panel", &[]);
    inspected.request(
        Some("xss"),
        XSS_PATH,
        &["-H", &format!("X-Note: {XSS_HEADER}")],
    );
    wait_for_count(&browser, "#request-rows tr", 3);
    // The subject as moat writes it (RFC 4514 escapes `<` and `>`), from the API.
    let xss_subject = inspected.captured("", 3)[0]["client"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(xss_subject.contains("script"), "{xss_subject}");
    assert_eq!(
        column(&browser, 2),
        [xss_subject, "CN=bob".to_owned(), "CN=alice".to_owned()],
        "newest first, each with its client's subject"
    );
    assert_eq!(
        column(&browser, 7)[1],
        "admins",
        "the rule that refused bob"
    );

    // Markup from the client is text: no element, no script ran, no dialog.
    assert_eq!(browser.alert(), None);
    assert_eq!(
        browser.count("script"),
        1,
        "only the inspector's own script"
    );
    assert_eq!(browser.count("#request-rows img"), 0);
    assert!(
        column(&browser, 5)[0].starts_with("/x/%3Cscript%3E"),
        "{:?}",
        column(&browser, 5)
    );
    click(&browser, "#request-rows tr:nth-child(1) td.path a");
    wait_until("the detail", Duration::from_secs(10), || {
        browser.text("#detail-title").contains("/x/")
    });
    let client = browser.text("#detail-client");
    assert!(client.contains(XSS_CN), "the CN as sent, as text: {client}");
    let headers = browser.text("#detail-request-headers");
    assert!(headers.contains(XSS_HEADER), "{headers}");
    assert_eq!(browser.count("#detail img"), 0);
    assert_eq!(browser.count("script"), 1);
    assert_eq!(browser.alert(), None);
    browser.screenshot("inspector-xss");

    // alice's request in detail: certificate, TLS, headers as the upstream got them, the
    // upstream's JSON answer pretty-printed.
    click(&browser, "#request-rows tr:nth-child(3) td.path a");
    wait_until("alice's detail", Duration::from_secs(10), || {
        browser.text("#detail-title") == "GET /hello"
    });
    let client = browser.text("#detail-client");
    assert!(
        client.contains("CN=alice") && client.contains("CN=Client CA"),
        "{client}"
    );
    assert!(client.contains("02"), "the serial: {client}");
    let tls = browser.text("#detail-tls");
    assert!(tls.contains("TLSv1.3") && tls.contains("TLS13_"), "{tls}");
    assert!(
        browser
            .text("#detail-request-headers")
            .contains("moat-client-subject")
    );
    assert_eq!(
        browser.text("#detail-response-body"),
        "{\n  \"seen\": \"/hello\"\n}"
    );
    browser.screenshot("inspector-detail");

    // Replay with a changed header: the upstream receives it changed, as alice.
    click(&browser, "#replay-edit");
    type_into(
        &browser,
        "#replay-headers",
        "X-Mode: from-the-browser\nMoat-Client-Subject: CN=mallory",
    );
    browser.screenshot("inspector-replay");
    click(&browser, "#replay-send");
    let received = inspected.upstream.wait_for("the browser's replay", |r| {
        r.header("x-mode") == Some("from-the-browser")
    });
    assert_eq!(received.target, "/hello");
    assert_eq!(received.header("moat-client-subject"), Some("CN=alice"));
    wait_for_count(&browser, "#request-rows tr", 4);
    wait_until("the replay's detail", Duration::from_secs(10), || {
        browser.text("#replay-result").starts_with("replayed: 200")
    });
    assert!(browser.text("#detail-facts").contains("Replay of"));

    // A filter by client subject hides the other rows.
    type_into(&browser, "#filter-subject", "alice");
    wait_for_count(&browser, "#request-rows tr", 2);
    assert!(
        column(&browser, 2)
            .iter()
            .all(|subject| subject == "CN=alice")
    );
    // A request of another client arriving now stays hidden; one of alice appears.
    inspected.request(Some("bob"), "/later", &[]);
    inspected.request(Some("alice"), "/later", &[]);
    wait_for_count(&browser, "#request-rows tr", 3);
    assert!(
        column(&browser, 2)
            .iter()
            .all(|subject| subject == "CN=alice")
    );
    type_into(&browser, "#filter-status", "4xx");
    wait_for_count(&browser, "#request-rows tr", 0);
    click(&browser, "#filter-reset");
    wait_for_count(&browser, "#request-rows tr", 6);
    browser.screenshot("inspector");

    // Refused handshakes appear live, with the reason.
    click(&browser, "#nav-handshakes");
    assert_ne!(inspected.refused_handshake(), 0);
    wait_for_count(&browser, "#handshake-rows tr", 1);
    assert_eq!(browser.text("#handshake-rows td.reason"), "unknown_ca");
    assert_eq!(browser.text("#handshake-rows td.subject"), "CN=stranger");
    assert_eq!(browser.text("#refused-count"), "1");
    browser.screenshot("inspector-handshakes");

    // The status page.
    click(&browser, "#nav-status");
    wait_until("the status page", Duration::from_secs(10), || {
        browser.text("#status-facts").contains("in the last minute")
    });
    let endpoints = browser.text("#status-endpoints");
    assert!(
        endpoints.contains(&inspected.upstream.address.to_string()),
        "{endpoints}"
    );
    assert!(browser.text("#status-facts").contains("p50"));
    browser.screenshot("inspector-status");

    // Nothing but the page's own files, no errors.
    for resource in browser.resources() {
        assert!(
            resource.starts_with(&inspected.inspector),
            "loaded {resource}"
        );
    }
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

#[test]
fn the_inspector_page_works_by_keyboard_and_in_a_narrow_window() {
    let scratch = Scratch::new();
    let inspected = Inspected::start(scratch.path(), &[]);
    inspected.request(
        Some("alice"),
        "/a/fairly/long/path/that/might/overflow?and=a&query=string",
        &[],
    );
    let browser = Browser::start_sized(360, 800);
    browser.open(&format!("{}/", inspected.inspector));
    wait_for_count(&browser, "#request-rows tr", 1);
    let width = browser.script(
        "return [document.documentElement.scrollWidth, window.innerWidth];",
        Value::Null,
    );
    let [scroll, inner]: [u64; 2] = serde_json::from_value(width).unwrap();
    assert!(
        scroll <= inner,
        "no sideways scrolling at 360 px: {scroll} > {inner}"
    );
    browser.screenshot("inspector-narrow");

    // Tab reaches the row's link; Enter opens the detail, which takes the focus; Escape
    // closes it.
    let mut reached = String::new();
    for _ in 0..20 {
        reached = browser.tab(1);
        if reached.starts_with("a ") && reached.contains("/a/fairly") {
            break;
        }
    }
    assert!(
        reached.contains("/a/fairly"),
        "Tab never reached the row: {reached}"
    );
    browser
        .block_on(
            browser
                .driver()
                .action_chain()
                .send_keys(Key::Enter)
                .perform(),
        )
        .unwrap();
    wait_until("the detail by keyboard", Duration::from_secs(10), || {
        browser.focused().starts_with("article#detail")
    });
    browser
        .block_on(
            browser
                .driver()
                .action_chain()
                .send_keys(Key::Escape)
                .perform(),
        )
        .unwrap();
    wait_until("the detail closed", Duration::from_secs(10), || {
        browser.script(
            "return document.getElementById('detail').hidden;",
            Value::Null,
        ) == Value::Bool(true)
    });
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
