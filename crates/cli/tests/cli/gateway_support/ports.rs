//! Ports on 127.0.0.1 for servers that must be told one: free ones (retried) and closed ones.

use std::net::{SocketAddr, TcpListener};

/// How Linux words `EADDRINUSE` (errno 98) in moat's, nginx's and Python's bind errors.
pub(super) const ADDRESS_IN_USE: &str = "Address already in use";

/// A port on 127.0.0.1 that was free a moment ago, for servers that must be told a port.
///
/// Between this check and the server's own bind another process may take the port, so start
/// the server through [`with_free_port`], which retries. The port is drawn at random from
/// below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default): every
/// port-0 listener and outgoing connection of the tests running in parallel gets its port from
/// that range, so none of them can take this one; only another draw of this function (or
/// another process told a fixed port) can, and the retry covers that.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    const LOWEST: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_start.saturating_sub(LOWEST);
    // A machine whose ephemeral range starts low leaves no room below it: let the kernel pick.
    if span < 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    for _ in 0..100 {
        // RandomState is seeded randomly per process and per call, a small RNG without a crate.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = LOWEST + (random % u64::from(span)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral_start} after 100 tries");
}

/// A port on 127.0.0.1 where nothing listens while the socket lives, e.g. for an upstream
/// that is down: bound and never listening, so connections are refused and the kernel hands
/// the port to no other bind (a port bound and dropped it could hand out again). Returns the
/// socket and its address.
pub fn closed_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// Starts a server on a port from [`free_port`]: `start(port)` returns the server, or `Err`
/// when the port was taken before the server could bind it; then it starts again on another
/// port, up to 5 times.
pub fn with_free_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..5 {
        match start(free_port()) {
            Ok(server) => return server,
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "{what} found its port taken 5 times:\n{}",
        failures.join("\n")
    );
}
