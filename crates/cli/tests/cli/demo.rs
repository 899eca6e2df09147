//! `moat demo`: the README's run command refuses a client without a certificate, accepts one
//! with, and the curl commands it prints do the same.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[test]
fn demo_once_shows_a_refused_and_an_accepted_request() {
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("refused: the server sent the TLS alert certificate_required"),
        "{stdout}"
    );
    assert!(
        stdout.contains("accepted: HTTP 200, upstream says: hello CN=demo-client"),
        "{stdout}"
    );
    // The same two requests through the demo's edge and agent.
    let tunnel = stdout
        .split_once("Through a tunnel")
        .map(|(_, tunnel)| tunnel)
        .unwrap_or_else(|| panic!("the demo shows no tunnel: {stdout}"));
    assert!(
        tunnel.contains("refused: the server sent the TLS alert certificate_required")
            && tunnel.contains("accepted: HTTP 200, upstream says: hello CN=demo-client"),
        "{tunnel}"
    );
    // The temporary directory is gone once the demo exits.
    let dir = stdout
        .lines()
        .find_map(|line| line.strip_prefix("moat demo: files in "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn the_printed_curl_commands_are_refused_and_accepted() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut curls = Vec::new();
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints 'Serving until Ctrl-C.'");
        if let Some(command) = line.strip_prefix("  curl ") {
            curls.push(format!("curl --silent --show-error {command}"));
        }
        if line == "Serving until Ctrl-C." {
            break;
        }
    }
    assert_eq!(curls.len(), 3, "{curls:?}");

    let run = |command: &str| {
        Command::new("sh")
            .args(["-c", &format!("{command} --max-time 20")])
            .output()
            .unwrap()
    };
    let refused = run(&curls[0]);
    let refused_err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused_err}");
    assert!(
        refused_err.contains("alert certificate required"),
        "curl without a certificate: {refused_err}"
    );
    let accepted = run(&curls[1]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&accepted.stdout),
        "hello CN=demo-client, from the upstream behind moat\n"
    );
    // The third goes through the edge (curl resolves *.localhost to loopback itself).
    let through_edge = run(&curls[2]);
    assert!(
        curls[2].contains("https://demo.tunnel.localhost:") && through_edge.status.success(),
        "{}: {}",
        curls[2],
        String::from_utf8_lossy(&through_edge.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&through_edge.stdout),
        "hello CN=demo-client, from the upstream behind moat\n"
    );

    // Ctrl-C ends the demo cleanly.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    assert!(exited.expect("the demo exits on SIGINT").success());
}
