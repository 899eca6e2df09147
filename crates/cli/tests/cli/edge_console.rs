//! The edge console (`/console` on the admin listener) in headless Chromium holding the edge's
//! local administrator certificate: a connected agent and its endpoint, gone within the
//! heartbeat tolerance of a SIGKILL; CAs flagged by days to expiry, the agent's uploaded ones
//! listed too; a refused handshake in the
//! feed and the charts without a reload; CA and endpoint edits through the page; markup in a
//! CA's subject shown as text; nothing loaded from elsewhere, no console error. A browser
//! without the certificate gets no page.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Browser, Certificates};
use crate::gateway_support::{TestCa, curl, moat_output, wait_until};
use crate::tunnel::control_plane::api;
use crate::tunnel::kit::{Published, curl_through, publish_app};

/// The edge's default heartbeat tolerance (`--heartbeat-tolerance`): a session the edge hears
/// nothing from for this long ends. A killed agent's connection is reset by the kernel, so the
/// edge usually knows far sooner.
const HEARTBEAT_TOLERANCE: Duration = Duration::from_secs(15);

/// Subjects that are markup: the page must show them as text.
const XSS_NAMES: [&str; 2] = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>"];

/// The admin CA, the admin listener's issuer (what the browser trusts the listener by).
const ADMIN_CA: &str = "home/edge/admin-ca/ca.crt";
/// The bundle's password (pk12util needs it on the command line).
const P12_PASSWORD: &str = "console-test";

/// `moat ARGS` in `dir`, which must succeed.
fn moat_ok(dir: &Path, args: &[&str]) {
    let output = moat_output(dir, args);
    assert!(
        output.status.success(),
        "moat {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stores the CA `pem` through the admin API; its id.
fn add_ca(dir: &Path, pem: &str) -> String {
    let (status, ca) = api(
        dir,
        "POST",
        "/certificate_authorities",
        Some(json!({ "ca_pem": pem })),
    );
    assert_eq!(status, 201, "{ca}");
    ca["id"].as_str().unwrap().to_owned()
}

/// A CA made by `moat pki init-ca` that ends `days` from now, stored through the API; its id.
fn add_ca_ending_in(dir: &Path, name: &str, days: u32) -> String {
    let out = format!("{days}-days-ca");
    moat_ok(
        dir,
        &[
            "pki",
            "init-ca",
            "--out",
            &out,
            "--cn",
            name,
            "--days",
            &days.to_string(),
        ],
    );
    add_ca(
        dir,
        &std::fs::read_to_string(dir.join(out).join("ca.crt")).unwrap(),
    )
}

/// The local administrator's certificate as the PKCS#12 bundle a browser imports.
fn admin_p12(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("p12-password"), format!("{P12_PASSWORD}\n")).unwrap();
    moat_ok(
        dir,
        &[
            "pki",
            "p12",
            "--cert",
            "home/edge/admin/admin.crt",
            "--key",
            "home/edge/admin/admin.key",
            "--out",
            "admin.p12",
            "--password-file",
            "p12-password",
        ],
    );
    dir.join("admin.p12")
}

/// The `data-*` attribute `name` of the first element matching `selector`.
fn attribute(browser: &Browser, selector: &str, name: &str) -> Option<String> {
    browser
        .attributes(selector, name)
        .into_iter()
        .next()
        .flatten()
}

#[test]
fn the_console_shows_agents_cas_and_refusals_live_to_an_admin_only() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let Published {
        edge, mut agent, ..
    } = publish_app(dir, &[]);
    let (_, sessions) = api(dir, "GET", "/tunnel_sessions", None);
    let agent_name = sessions["tunnel_sessions"][0]["agent"]
        .as_str()
        .unwrap_or_else(|| panic!("{sessions}"))
        .to_owned();

    let critical = add_ca_ending_in(dir, "Ends Within A Week CA", 5);
    let warning = add_ca_ending_in(dir, "Ends Within A Month CA", 20);
    let fine = add_ca_ending_in(dir, "Ends In A Year CA", 365);
    let markup: Vec<String> = XSS_NAMES
        .iter()
        .map(|name| add_ca(dir, &TestCa::new(name).pem))
        .collect();

    let admin = std::fs::read_to_string(dir.join("home/edge/admin-address")).unwrap();
    let admin = admin.trim();
    // The page as the listener sends it: a policy that allows only this origin and no inline
    // script, and no content sniffing.
    let (code, headers, err) = curl(
        dir,
        &[
            "--cacert",
            ADMIN_CA,
            "--cert",
            "home/edge/admin/admin.crt",
            "--key",
            "home/edge/admin/admin.key",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{admin}/console"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let headers = headers.to_ascii_lowercase();
    assert!(
        headers.contains("\r\ncontent-security-policy: default-src 'self'; script-src 'self';")
            && headers.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{headers}"
    );
    let p12 = admin_p12(dir);
    let trusted_ca = dir.join(ADMIN_CA);

    // A browser that trusts the listener but has no admin certificate: the handshake fails,
    // no page. (Chromium names it ERR_BAD_SSL_CLIENT_AUTH_CERT, or ERR_SOCKET_NOT_CONNECTED
    // when the listener's close overtakes the alert; never a server certificate error.)
    let stranger = Browser::start_with_certificates(&Certificates {
        trusted_ca: &trusted_ca,
        client: None,
    });
    // The navigation itself may fail (chromedriver reports the network error) or end on
    // Chromium's error page; either way, no console.
    let failure = match stranger.try_open(&format!("{admin}/console")) {
        Err(error) => error,
        Ok(()) => stranger
            .script("return document.documentElement.innerText;", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    assert_eq!(
        stranger.count("#agent-rows"),
        0,
        "a stranger got the console"
    );
    assert!(
        failure.contains("ERR_") && !failure.contains("ERR_CERT_"),
        "{failure}"
    );
    drop(stranger);

    let browser = Browser::start_with_certificates(&Certificates {
        trusted_ca: &trusted_ca,
        client: Some((&p12, P12_PASSWORD)),
    });
    // `/` leads to the console.
    browser.open(&format!("{admin}/"));
    let url = browser.script("return location.href;", Value::Null);
    assert_eq!(url, json!(format!("{admin}/console")));
    browser.script("window.notReloaded = true; return null;", Value::Null);
    // Keyboard: the first stop is the first section link, and it shows its focus; the forms'
    // actions are buttons.
    assert_eq!(browser.tab(1), "a \"Agents\"");
    let outline = browser.script(
        "return getComputedStyle(document.activeElement).outlineStyle;",
        Value::Null,
    );
    assert_eq!(outline, json!("solid"), "the focused link shows no outline");
    assert_eq!(browser.count("form button[type=submit]"), 2);

    // The agent and its endpoint.
    let agent_row = format!("#agent-rows tr[data-agent=\"{agent_name}\"]");
    wait_until("the agent on the console", Duration::from_secs(10), || {
        browser.count(&format!(
            "{agent_row} li[data-hostname=\"app.tunnel.test\"]"
        )) == 1
    });

    // CAs by days to expiry, in words as well as colour.
    wait_until("the CAs on the console", Duration::from_secs(10), || {
        browser.count("#ca-rows tr") == 5
    });
    for (id, level, words) in [
        (&critical, "critical", "CRITICAL: "),
        (&warning, "warning", "WARNING: "),
        (&fine, "ok", ""),
    ] {
        let row = format!("#ca-rows tr[data-ca-id=\"{id}\"]");
        assert_eq!(
            attribute(&browser, &row, "data-expiry").as_deref(),
            Some(level)
        );
        let shown = browser.text(&format!("{row} .expiry"));
        assert!(
            shown.starts_with(words) && shown.ends_with(" days left"),
            "{shown}"
        );
    }
    assert_eq!(
        attribute(
            &browser,
            &format!("#ca-rows tr[data-ca-id=\"{critical}\"]"),
            "data-days"
        )
        .as_deref(),
        Some("4"),
        "5 days less the moments since it was made: 4 whole days"
    );

    // What the endpoints use, the agent's uploaded client CA and its server certificate
    // included.
    let uploaded = "#in-use-rows tr[data-endpoint=\"app.tunnel.test\"]";
    wait_until("the agent's certificates", Duration::from_secs(10), || {
        browser.count(&format!("{uploaded}[data-kind=ca]")) == 1
            && browser.count(&format!("{uploaded}[data-kind=server]")) == 1
    });
    let subject = browser.text(&format!("{uploaded}[data-kind=ca] .subject"));
    assert!(subject.contains("Client CA"), "{subject}");
    assert_eq!(
        attribute(
            &browser,
            &format!("{uploaded}[data-kind=ca]"),
            "data-expiry"
        )
        .as_deref(),
        Some("ok")
    );

    // Markup in a subject is text: no element made of it, no alert.
    for (id, name) in markup.iter().zip(XSS_NAMES) {
        let shown = browser.text(&format!("#ca-rows tr[data-ca-id=\"{id}\"] .ca-name"));
        assert_eq!(shown, name);
    }
    assert_eq!(browser.count("main script, main img"), 0);
    assert_eq!(browser.alert(), None);

    // A client without a certificate is refused at the handshake: the feed shows it, and the
    // refusals chart counts it, without a reload.
    let (code, _, _) = curl_through(dir, &edge, "app.tunnel.test", "/", &[]);
    assert_ne!(code, 0, "curl without a certificate got through");
    wait_until("the refusal in the feed", Duration::from_secs(10), || {
        browser.count("#feed-rows tr[data-kind=refusal][data-reason=no_certificate]") >= 1
    });
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    let (code, body, _) = curl_through(dir, &edge, "app.tunnel.test", "/", &alice);
    assert_eq!((code, body.as_str()), (0, "hello from upstream /"));
    wait_until("the handshake in the feed", Duration::from_secs(10), || {
        browser.count("#feed-rows tr[data-kind=handshake]") >= 1
    });
    wait_until("the charts", Duration::from_secs(10), || {
        browser.count("#chart-refusals [data-series=no_certificate]") == 1
            && browser.count("#chart-requests [data-series=\"2xx\"]") == 1
            && browser.count("#chart-refusals rect") >= 1
    });
    assert_eq!(
        browser.text("#chart-refusals [data-series=no_certificate]"),
        "no_certificate: 1"
    );

    // Editing through the page: a CA pasted in and deleted, an endpoint defined and deleted.
    let pasted = TestCa::new("Pasted CA");
    fill(&browser, "#ca-pem", &pasted.pem);
    fill(&browser, "#ca-description", "from the console");
    click(&browser, "#ca-form button[type=submit]");
    wait_until("the pasted CA", Duration::from_secs(10), || {
        browser.count("#ca-rows tr") == 6
    });
    let (_, cas) = api(dir, "GET", "/certificate_authorities", None);
    let stored = cas["certificate_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ca| ca["subject_common_name"] == "Pasted CA")
        .unwrap_or_else(|| panic!("{cas}"))
        .clone();
    assert_eq!(stored["description"], "from the console");
    click(
        &browser,
        &format!(
            "#ca-rows tr[data-ca-id=\"{}\"] button",
            stored["id"].as_str().unwrap()
        ),
    );
    wait_until("the pasted CA gone", Duration::from_secs(10), || {
        browser.count("#ca-rows tr") == 5
    });

    fill(&browser, "#endpoint-hostname", "defined.tunnel.test");
    fill(&browser, "#endpoint-cas", &fine);
    click(&browser, "#endpoint-form button[type=submit]");
    wait_until("the defined endpoint", Duration::from_secs(10), || {
        browser.count("#endpoint-rows tr") == 1
    });
    let (_, endpoints) = api(dir, "GET", "/endpoints", None);
    assert_eq!(endpoints["endpoints"][0]["hostname"], "defined.tunnel.test");
    assert_eq!(
        endpoints["endpoints"][0]["certificate_authority_ids"],
        json!([fine])
    );
    // A CA an endpoint trusts cannot go: the API's refusal shows as the page's status (and
    // Chromium logs the 409: the only error it may log).
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    click(
        &browser,
        &format!("#ca-rows tr[data-ca-id=\"{fine}\"] button"),
    );
    wait_until("the refusal shown", Duration::from_secs(10), || {
        browser.text("#status").contains("is used by endpoint")
    });
    let errors = browser.console_errors();
    assert!(
        errors.len() == 1 && errors[0].contains("status of 409"),
        "{errors:?}"
    );
    click(&browser, "#endpoint-rows tr button");
    wait_until("the endpoint gone", Duration::from_secs(10), || {
        browser.count("#endpoint-rows tr") == 0
    });
    let (_, endpoints) = api(dir, "GET", "/endpoints", None);
    assert_eq!(endpoints["endpoints"], json!([]));

    // Nothing but the admin origin, no error, and no reload happened along the way.
    for resource in browser.resources() {
        assert!(
            resource.starts_with(admin),
            "loaded from elsewhere: {resource}"
        );
    }
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    assert_eq!(
        browser.script("return window.notReloaded === true;", Value::Null),
        json!(true)
    );
    let shot = browser.screenshot_full_page("edge-console", 3000);
    assert!(shot.is_file());

    // Narrow: nothing wider than a 360 px window.
    browser.resize(360, 800);
    let overflow = browser.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        Value::Null,
    );
    // (Wide tables scroll sideways in their own box; what else sticks out is named.)
    let wide = browser.script(
        "const w = document.documentElement.clientWidth; \
         return Array.from(document.querySelectorAll('body *')) \
           .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll')) \
           .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className);",
        Value::Null,
    );
    assert_eq!(overflow, json!(0), "the page is wider than 360 px: {wide}");
    browser.screenshot("edge-console-narrow");
    browser.resize(1280, 900);

    // SIGKILL: the agent's session and endpoint leave the console within the heartbeat
    // tolerance (the edge sees the connection reset at once; the page hears it from the feed).
    agent.signal("KILL");
    let killed = Instant::now();
    wait_until("the killed agent gone", HEARTBEAT_TOLERANCE, || {
        browser.count(&agent_row) == 0
    });
    let gone_after = killed.elapsed();
    eprintln!("edge console: the killed agent was gone after {gone_after:?}");
    assert!(gone_after < HEARTBEAT_TOLERANCE, "{gone_after:?}");
    wait_until(
        "the disconnection in the feed",
        Duration::from_secs(5),
        || browser.count("#feed-rows tr[data-kind=agent_disconnected]") == 1,
    );
    wait_until(
        "the agent's certificates gone",
        Duration::from_secs(5),
        || browser.count(uploaded) == 0,
    );
    agent.wait_exit(Duration::from_secs(10));
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

/// Sets the value of the form field `selector` (as pasting would).
fn fill(browser: &Browser, selector: &str, value: &str) {
    browser.script(
        "document.querySelector(arguments[0][0]).value = arguments[0][1]; return null;",
        json!([selector, value]),
    );
}

/// Clicks the element `selector` as a person would (WebDriver's click).
fn click(browser: &Browser, selector: &str) {
    use thirtyfour::prelude::*;
    browser.block_on(async {
        browser
            .driver()
            .find(By::Css(selector))
            .await
            .unwrap_or_else(|error| panic!("{selector}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {selector}: {error}"));
    });
}
