//! Several edges on one PostgreSQL store: an agent keeps a session to each, losing one edge
//! (SIGKILL) fails no request through the other, and one join token works once across edges.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::kit::{
    RunningEdge, client_certificate, curl_to, join, make_token, publish_flags, server_certificate,
    start_agent_with, start_edge,
};
use crate::gateway_support::{TestCa, start_http_upstream};

#[path = "../../../../store/tests/support/mod.rs"]
mod postgres;

pub(crate) use postgres::PgCluster;

/// Two edges on one store, sharing the agent CA the way an operator copies it: edge A in
/// `a` makes it at its first start, edge B in `b` gets a copy before its own.
pub(crate) struct TwoEdges {
    pub a: RunningEdge,
    pub b: RunningEdge,
}

/// Starts edge A in `a` and edge B in `b` on the store at `store`, with `extra` flags each.
pub(crate) fn start_two_edges(a: &Path, b: &Path, store: &str, extra: &[&str]) -> TwoEdges {
    let flags = [&["--domain", "*.tunnel.test", "--store", store][..], extra].concat();
    let edge_a = start_edge(a, &flags);
    copy_dir(&a.join("home/edge/agent-ca"), &b.join("home/edge/agent-ca"));
    let edge_b = start_edge(b, &flags);
    TwoEdges {
        a: edge_a,
        b: edge_b,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Writes in `a` the server CA, `app.tunnel.test`'s certificate, the client CA `cas.pem` with
/// its client alice, and joins the agent whose credentials live in `a` with a token of the
/// store at `store` (granting `*.tunnel.test`).
pub(crate) fn join_through_shared_store(a: &Path, store: &str) {
    let server_ca = TestCa::new("Server CA");
    std::fs::write(a.join("server-ca.crt"), &server_ca.pem).unwrap();
    let client_ca = TestCa::new("Client CA");
    std::fs::write(a.join("cas.pem"), &client_ca.pem).unwrap();
    client_certificate(a, &client_ca, "alice", 10);
    server_certificate(a, &server_ca, "app.tunnel.test", 20);
    make_token(a, "token", &["--grant", "*.tunnel.test", "--store", store]);
    let (joined, output) = join(a, "token");
    assert!(joined, "moat agent join: {output}");
}

/// curl as alice to `host` through the edge at `public_port`: (exit code, body).
fn as_alice(dir: &Path, public_port: u16, path: &str) -> (i32, String) {
    let (code, body, _) = curl_to(
        dir,
        public_port,
        "app.tunnel.test",
        path,
        &["--cert", "alice.crt", "--key", "alice.key"],
    );
    (code, body)
}

#[test]
fn an_agent_on_two_edges_loses_nothing_but_the_killed_edge() {
    let pg = PgCluster::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a_dir.path(), b_dir.path());
    let TwoEdges {
        a: mut edge_a,
        b: edge_b,
    } = start_two_edges(a, b, &pg.url(), &[]);

    join_through_shared_store(a, &pg.url());

    let upstream = start_http_upstream().to_string();
    let (edge_a_address, edge_b_address) = (
        format!("127.0.0.1:{}", edge_a.agent_port),
        format!("127.0.0.1:{}", edge_b.agent_port),
    );
    let flags = publish_flags("app.tunnel.test", &[]);
    let mut args = vec![
        "http",
        upstream.as_str(),
        "--edge",
        edge_a_address.as_str(),
        "--edge",
        edge_b_address.as_str(),
    ];
    args.extend(flags.iter().map(String::as_str));
    let (agent, _) = start_agent_with(a, &args);
    // The second edge's "published" line.
    let second = std::iter::from_fn(|| agent.next_stdout_line(Duration::from_secs(30)))
        .find(|line| line.contains(" published at "))
        .unwrap_or_else(|| panic!("only one edge published; log:\n{}", agent.log()));
    assert!(second.contains("(edge 127.0.0.1:"), "{second}");

    assert_eq!(
        as_alice(a, edge_a.public_port, "/via-a"),
        (0, "hello from upstream /via-a".to_owned())
    );
    assert_eq!(
        as_alice(a, edge_b.public_port, "/via-b"),
        (0, "hello from upstream /via-b".to_owned())
    );

    // Requests through B, before, during and after edge A's SIGKILL: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        let (dir, port) = (a.to_path_buf(), edge_b.public_port);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let answer = as_alice(&dir, port, "/during");
                if answer != (0, "hello from upstream /during".to_owned()) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(answer);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::Relaxed) < count {
            assert!(Instant::now() < deadline, "the client stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(5);
    edge_a.moat.signal("KILL");
    edge_a.moat.wait_exit(Duration::from_secs(10));
    let after_kill = done.load(Ordering::Relaxed);
    wait_for(after_kill + 20);
    stop.store(true, Ordering::Relaxed);
    let failures = client.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests through edge B failed while edge A died: {failures:?}"
    );
    assert!(done.load(Ordering::Relaxed) >= 25);
    drop(edge_b);
}

#[test]
fn one_join_token_sent_to_two_edges_at_once_joins_once() {
    let pg = PgCluster::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a_dir.path(), b_dir.path());
    let edges = start_two_edges(a, b, &pg.url(), &[]);
    let token = make_token(
        a,
        "token",
        &["--grant", "*.tunnel.test", "--store", &pg.url()],
    );
    // The same token, but naming edge B's agent listener: the id and secret are the same.
    let for_b = with_edge(&token, &format!("127.0.0.1:{}", edges.b.agent_port));
    std::fs::write(b.join("token"), &for_b).unwrap();
    let racers: Vec<_> = [a.to_path_buf(), b.to_path_buf()]
        .into_iter()
        .map(|dir| std::thread::spawn(move || join(&dir, "token")))
        .collect();
    let outcomes: Vec<(bool, String)> = racers
        .into_iter()
        .map(|racer| racer.join().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|(joined, _)| *joined).count(),
        1,
        "{outcomes:?}"
    );
    let (_, refusal) = outcomes.iter().find(|(joined, _)| !joined).unwrap();
    assert!(refusal.contains("was already used"), "{refusal}");
}

/// `token` with its edge address replaced by `edge` (base64url JSON after `moat-join-1.`).
fn with_edge(token: &str, edge: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let encoded = token.strip_prefix("moat-join-1.").unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&engine.decode(encoded).unwrap()).unwrap();
    json["edge"] = serde_json::Value::String(edge.to_owned());
    format!(
        "moat-join-1.{}",
        engine.encode(serde_json::to_vec(&json).unwrap())
    )
}
