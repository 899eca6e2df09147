//! A real browser for the tests of moat's pages (the audit report, the inspector, the edge
//! console): Debian's headless Chromium driven through chromedriver over WebDriver (the
//! `thirtyfour` client), with the questions a test asks a page — what is its text, what did
//! the console say, what did it load, what does a person see (a screenshot artifact).
//!
//! ```ignore
//! let browser = Browser::start();
//! browser.open_file(&dir.join("report.html"));
//! assert_eq!(browser.console_errors(), Vec::<String>::new());
//! let accepted = browser.text("[data-total=handshakes_accepted]");
//! browser.screenshot("audit-report");   // target/test-artifacts/audit-report.png
//! ```
//!
//! A page behind a client-certificate handshake (the edge console) needs a browser that holds
//! the certificate: [`Browser::start_with_certificates`] gives Chromium its own NSS store (a
//! trusted CA, a PKCS#12 identity) and the policy that presents the identity without a dialog.
//!
//! The methods are synchronous (the kit owns a small runtime), like the rest of the test kit;
//! [`Browser::block_on`] and [`Browser::driver`] reach the whole async client when a test
//! needs more. Dropping the browser ends the session, Chromium and chromedriver.
#![allow(dead_code)] // Each page's tests use a different subset.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use thirtyfour::LoggingPrefsLogLevel;
use thirtyfour::prelude::*;

use crate::gateway_support::with_free_port;

/// Debian's `chromedriver` (package chromium-driver) and the browser it drives (chromium).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "apt-get install chromium chromium-driver (.ci/run installs them)";

/// Chromium's flags. Headless without a sandbox (tests run as root in a container) or a GPU;
/// the rest keep it off the network on its own (update checks, sync, field trials, QUIC):
/// this machine refuses every connection that leaves it, and a page under test must be the
/// only thing the browser talks to. A fresh profile each time (`--user-data-dir`) is added
/// per browser.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
];

/// Starting Chromium takes about a second; a busy 2-core machine may take several.
const SESSION_START_LIMIT: Duration = Duration::from_secs(60);

/// One headless Chromium, ready for pages.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    /// `None` once the session has ended (in [`Drop`]).
    driver: Option<WebDriver>,
    chromedriver: Child,
    /// The browser's profile, deleted with the browser.
    _profile: tempfile::TempDir,
    /// Its `HOME` when it has its own certificate store, deleted with the browser.
    _home: Option<tempfile::TempDir>,
}

/// A line of the browser's console log.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`...
    pub level: String,
    /// `console-api`, `javascript`, `network`, `security`... when Chromium says.
    pub source: Option<String>,
    pub message: String,
}

impl Browser {
    /// Chromium with a 1280×900 window.
    pub fn start() -> Browser {
        Browser::start_sized(1280, 900)
    }

    /// Chromium with a `width`×`height` window; fails the test with the install hint when
    /// chromium or chromedriver is missing.
    pub fn start_sized(width: u32, height: u32) -> Browser {
        Browser::launch(width, height, None)
    }

    /// Chromium (1280×900) whose certificate store holds `certificates`: it trusts a server
    /// CA and, when given one, presents a client certificate to any `https://127.0.0.1` that
    /// asks for one (the admin listener). Headless Chromium cannot pick a certificate in a
    /// dialog: the enterprise policy `AutoSelectCertificateForUrls` picks it (see
    /// [`ensure_client_certificate_policy`]).
    pub fn start_with_certificates(certificates: &Certificates<'_>) -> Browser {
        let home = tempfile::tempdir().unwrap();
        certificates.install(home.path());
        if certificates.client.is_some() {
            ensure_client_certificate_policy();
        }
        Browser::launch(1280, 900, Some(home))
    }

    /// Chromium with a `width`×`height` window, with `home` as its `HOME` (its certificate
    /// store, `.pki/nssdb`) when given.
    fn launch(width: u32, height: u32, home: Option<tempfile::TempDir>) -> Browser {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: {INSTALL_HINT}"
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let home_path = home.as_ref().map(|home| home.path().to_path_buf());
        let (chromedriver, port) = with_free_port("chromedriver", |port| {
            start_chromedriver(port, home_path.as_deref())
        });
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = DesiredCapabilities::chrome();
        capabilities.set_binary(CHROMIUM).unwrap();
        for flag in CHROMIUM_FLAGS {
            capabilities.add_arg(flag).unwrap();
        }
        capabilities
            .add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        capabilities
            .add_arg(&format!("--window-size={width},{height}"))
            .unwrap();
        capabilities
            .set_browser_log_level(LoggingPrefsLogLevel::All)
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let driver = runtime.block_on(async {
            tokio::time::timeout(SESSION_START_LIMIT, WebDriver::new(url, capabilities)).await
        });
        let mut browser = Browser {
            runtime,
            driver: None,
            chromedriver,
            _profile: profile,
            _home: home,
        };
        match driver {
            Ok(Ok(driver)) => browser.driver = Some(driver),
            Ok(Err(error)) => panic!("chromium did not start through chromedriver: {error}"),
            Err(_) => panic!("chromium did not start within {SESSION_START_LIMIT:?}"),
        }
        browser
    }

    /// The WebDriver session, for what the kit does not wrap (use with [`Browser::block_on`]).
    pub fn driver(&self) -> &WebDriver {
        self.driver.as_ref().expect("the session is live")
    }

    /// Runs a future of the async client on the kit's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Opens `url` (`http://127.0.0.1:PORT/...` or `file://...`) and waits for it to load.
    pub fn open(&self, url: &str) {
        self.block_on(self.driver().goto(url))
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    /// Opens `url`; the navigation's error (e.g. `net::ERR_BAD_SSL_CLIENT_AUTH_CERT`) when
    /// Chromium reports one, for tests of pages a browser must not get.
    pub fn try_open(&self, url: &str) -> Result<(), String> {
        self.block_on(self.driver().goto(url))
            .map_err(|error| error.to_string())
    }

    /// Opens a file of this machine.
    pub fn open_file(&self, path: &Path) {
        let path = path.canonicalize().unwrap();
        self.open(&format!("file://{}", path.display()));
    }

    /// Sets the window's size (e.g. 360 wide: a phone).
    pub fn resize(&self, width: u32, height: u32) {
        self.block_on(self.driver().set_window_rect(0, 0, width, height))
            .unwrap();
    }

    /// Runs `body` as the body of a function in the page (`return` gives the value) with
    /// `arguments[0]` = `argument`, and returns what it returned.
    pub fn script(&self, body: &str, argument: Value) -> Value {
        self.block_on(self.driver().execute(body, vec![argument]))
            .unwrap_or_else(|error| panic!("script failed: {error}\n{body}"))
            .json()
            .clone()
    }

    /// The `textContent` of the first element matching the CSS `selector`; fails if none does.
    pub fn text(&self, selector: &str) -> String {
        let text = self.script(
            "const element = document.querySelector(arguments[0]); \
             return element === null ? null : element.textContent;",
            Value::from(selector),
        );
        text.as_str()
            .unwrap_or_else(|| panic!("no element matches {selector:?}"))
            .to_owned()
    }

    /// The value of `attribute` on each element matching `selector`, in document order.
    pub fn attributes(&self, selector: &str, attribute: &str) -> Vec<Option<String>> {
        let values = self.script(
            "return Array.from(document.querySelectorAll(arguments[0][0]), \
             element => element.getAttribute(arguments[0][1]));",
            serde_json::json!([selector, attribute]),
        );
        serde_json::from_value(values).unwrap()
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> usize {
        let count = self.script(
            "return document.querySelectorAll(arguments[0]).length;",
            Value::from(selector),
        );
        count.as_u64().unwrap() as usize
    }

    /// The browser's console log since the last call (uncaught errors, CSP violations and
    /// failed loads are `SEVERE`).
    pub fn console(&self) -> Vec<ConsoleEntry> {
        let entries = self.block_on(self.driver().browser_log()).unwrap();
        entries
            .into_iter()
            .map(|entry| ConsoleEntry {
                level: entry.level,
                source: entry.source,
                message: entry.message,
            })
            .collect()
    }

    /// The console's errors and warnings since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|entry| entry.level == "SEVERE" || entry.level == "WARNING")
            .map(|entry| format!("{}: {}", entry.level, entry.message))
            .collect()
    }

    /// Every URL the page loaded besides the document itself (scripts, styles, images,
    /// fetches), from the Resource Timing entries.
    pub fn resources(&self) -> Vec<String> {
        let names = self.script(
            "return performance.getEntriesByType('resource').map(entry => entry.name);",
            Value::Null,
        );
        serde_json::from_value(names).unwrap()
    }

    /// The text of an open alert, confirm or prompt dialog; `None` when none is open.
    pub fn alert(&self) -> Option<String> {
        self.block_on(self.driver().get_alert_text()).ok()
    }

    /// Presses Tab `times` times and describes the element that then has the focus
    /// (`tag#id.class "text"`), for keyboard checks.
    pub fn tab(&self, times: usize) -> String {
        let mut chain = self.driver().action_chain();
        for _ in 0..times {
            chain = chain.send_keys(Key::Tab);
        }
        self.block_on(chain.perform()).unwrap();
        self.focused()
    }

    /// The element that has the focus, as `tag#id.class "text"` (text cut to 40 characters).
    pub fn focused(&self) -> String {
        let described = self.script(
            "const e = document.activeElement; if (!e) return ''; \
             return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + \
             (e.className ? '.' + String(e.className).split(' ').join('.') : '') + \
             ' ' + JSON.stringify((e.textContent || '').trim().slice(0, 40));",
            Value::Null,
        );
        described.as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG of the window as `NAME.png` under the test artifacts (`target/test-artifacts`)
    /// and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let path = artifacts_dir().join(format!("{name}.png"));
        let png = self.block_on(self.driver().screenshot_as_png()).unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Saves a PNG of the whole page, as tall as it is (up to `max_height`): the window grows
    /// to the page's height for the shot and is set back afterwards.
    pub fn screenshot_full_page(&self, name: &str, max_height: u32) -> PathBuf {
        let size = self.script(
            "return [window.outerWidth, window.outerHeight, \
             document.documentElement.scrollHeight + window.outerHeight - window.innerHeight];",
            Value::Null,
        );
        let size: [u32; 3] = serde_json::from_value(size).unwrap();
        self.resize(size[0], size[2].min(max_height));
        let path = self.screenshot(name);
        self.resize(size[0], size[1]);
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            // Ends Chromium; bounded, so a hung browser cannot hang the test run.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), driver.quit()).await
            });
        }
        // chromedriver leads its own process group (Chromium's processes are in it too):
        // end the whole group, whatever is left of it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.chromedriver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// Starts chromedriver on 127.0.0.1:`port` (with `home` as `HOME` when given) and waits until it says it is ready; `Err` when
/// another process had the port (for [`with_free_port`] to try another).
fn start_chromedriver(port: u16, home: Option<&Path>) -> Result<(Child, u16), String> {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(CHROMEDRIVER);
    if let Some(home) = home {
        // Chromium (started by chromedriver, inheriting this) reads $HOME/.pki/nssdb.
        command.env("HOME", home);
    }
    let mut child = command
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that Drop can end it with every Chromium process it starts.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|error| panic!("{CHROMEDRIVER} does not start ({error}): {INSTALL_HINT}"));
    let (lines, received) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            // Read to the end so chromedriver never blocks on a full pipe.
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let mut said = Vec::new();
    loop {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("started successfully") => return Ok((child, port)),
            Ok(line) => said.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let said = said.join("\n");
                if said.contains("Address already in use") || said.contains("port not available") {
                    return Err(said);
                }
                panic!("chromedriver did not start on port {port}:\n{said}");
            }
        }
    }
}

/// Where tests leave what a person may want to look at: `<target dir>/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a browser's certificate store (NSS, as Chromium on Linux reads it) holds.
pub struct Certificates<'a> {
    /// A CA certificate (PEM) trusted for servers: the admin listener's issuer.
    pub trusted_ca: &'a Path,
    /// A client certificate and its key as PKCS#12 (`moat pki p12`), and the bundle's
    /// password; `None` for a browser that has no certificate to show.
    pub client: Option<(&'a Path, &'a str)>,
}

/// Debian's NSS tools (package libnss3-tools), which write Chromium's certificate store.
const CERTUTIL: &str = "/usr/bin/certutil";
const PK12UTIL: &str = "/usr/bin/pk12util";

impl Certificates<'_> {
    /// Makes `home/.pki/nssdb` (no password) holding the trusted CA and the client certificate.
    fn install(&self, home: &Path) {
        let db = home.join(".pki/nssdb");
        std::fs::create_dir_all(&db).unwrap();
        let db = format!("sql:{}", db.display());
        run_tool(CERTUTIL, &["-N", "-d", &db, "--empty-password"]);
        let ca = self.trusted_ca.to_str().unwrap();
        // C,,: a CA trusted to issue server certificates (and nothing else).
        run_tool(
            CERTUTIL,
            &["-A", "-d", &db, "-n", "trusted-ca", "-t", "C,,", "-i", ca],
        );
        if let Some((p12, password)) = self.client {
            let p12 = p12.to_str().unwrap();
            run_tool(PK12UTIL, &["-i", p12, "-d", &db, "-W", password]);
        }
    }
}

fn run_tool(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} does not start ({error}): apt-get install libnss3-tools (.ci/run installs it)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where Debian's Chromium reads the machine's mandatory policies.
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// The policy file the tests own in it.
const POLICY_FILE: &str = "moat-tests.json";
/// Any https page on 127.0.0.1, whatever its port, that asks for a client certificate gets
/// the one certificate the browser's store holds (the filter is empty: only a browser started
/// with a client certificate has one, so the others are unaffected).
const CLIENT_CERTIFICATE_POLICY: &str =
    r#"{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{}}"]}"#;

/// Writes the policy that lets headless Chromium present a client certificate (it has no
/// dialog to ask with). The tests run as root in CI (.ci/run); the file is the same every
/// time, written whole through a rename, so tests running at once cannot see half of it.
pub fn ensure_client_certificate_policy() {
    let dir = Path::new(POLICY_DIR);
    let path = dir.join(POLICY_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == CLIENT_CERTIFICATE_POLICY) {
        return;
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|error| {
        panic!("cannot make {POLICY_DIR} ({error}): the console tests write a Chromium policy there; run them as root, as CI does")
    });
    let staging = dir.join(format!(".{POLICY_FILE}.{}", std::process::id()));
    std::fs::write(&staging, CLIENT_CERTIFICATE_POLICY).unwrap();
    std::fs::rename(&staging, &path).unwrap();
}
