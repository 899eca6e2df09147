//! Trust that changes while moat runs: reloads under load, resumption, stale CRLs. One
//! sub-module per kind of change; the test directory and the clients they share are here.

mod policy_file;
mod reloads;
mod resumption;
mod stale_crls;

use crate::gateway_support;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, TestCa, Usage, rustls_request, start_http_upstream, write_pair,
    write_server_pki,
};

/// Writes `contents` to `path` the way deployment tools do: a new file renamed over the old.
fn replace(path: &Path, contents: impl AsRef<[u8]>) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Waits up to 10 seconds until `needle` appears `count` times in moat's log.
fn wait_for_count(moat: &Moat, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = moat.log();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not {count} times in the log:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The client options for the key pair `name` in `dir`, trusting `server-ca.pem`.
fn as_client<'a>(dir: &'a Path, crt: &'a Path, key: &'a Path) -> ClientOptions<'a> {
    ClientOptions {
        server_ca: Box::leak(dir.join("server-ca.pem").into_boxed_path()),
        identity: Some((crt, key)),
        tls12_only: false,
        send: GET_ROOT,
        half_close: false,
    }
}

/// One GET on a new connection as `name`.
fn get_as(dir: &Path, port: u16, name: &str) -> Result<String, rustls::Error> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    rustls_request(port, &as_client(dir, &crt, &key))
}

/// Files for an http endpoint whose client CAs and CRL change: CAs A and B; alice (A), bob and
/// carol (B); a server certificate from "Server CA".
struct Setup {
    dir: tempfile::TempDir,
    server_ca: TestCa,
    ca_a: TestCa,
    ca_b: TestCa,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let server_ca = write_server_pki(path, "Server CA", "server-ca.pem", 100);
        let ca_a = TestCa::new("Clients A");
        let ca_b = TestCa::new("Clients B");
        write_pair(path, "alice", &ca_a.leaf("alice", Usage::Client, 1));
        write_pair(path, "bob", &ca_b.leaf("bob", Usage::Client, 2));
        write_pair(path, "carol", &ca_b.leaf("carol", Usage::Client, 3));
        std::fs::write(path.join("cas.pem"), format!("{}{}", ca_a.pem, ca_b.pem)).unwrap();
        std::fs::write(path.join("crl-b.pem"), ca_b.crl(&[]).0).unwrap();
        Setup {
            dir,
            server_ca,
            ca_a,
            ca_b,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start(&self, extra: &[&str]) -> Moat {
        let upstream = start_http_upstream();
        std::fs::write(
            self.path().join("moat.toml"),
            format!(
                "[[endpoints]]\nname = \"app\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n\
                 upstream = \"{upstream}\"\ncrt = \"server.crt\"\nkey = \"server.key\"\n\
                 mutual_tls_cas = [\"cas.pem\"]\ncrls = [\"crl-b.pem\"]\n"
            ),
        )
        .unwrap();
        let mut args = vec!["start", "--config", "moat.toml", "--all"];
        args.extend_from_slice(extra);
        Moat::start(self.path(), &args, 1)
    }
}
