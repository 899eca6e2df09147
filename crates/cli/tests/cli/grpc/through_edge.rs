//! gRPC through the tunnel: an endpoint terminated at the edge carries every kind of call over
//! the agent's connection to an h2c service behind the agent.

use crate::tunnel::kit::{
    joined_with_alice, publish_flags, server_certificate, start_agent, start_edge,
};

use super::peers::{connect, start_h2c_upstream, text, unary};
use super::{assert_calls_of_every_kind, runtime};

#[test]
fn every_kind_of_grpc_call_crosses_the_tunnel_to_a_service_behind_the_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let pki = joined_with_alice(dir, "*.tunnel.test");
    server_certificate(dir, &pki.server_ca, "grpc.tunnel.test", 30);
    let upstream = format!("http://{}", start_h2c_upstream());
    let flags = publish_flags("grpc.tunnel.test", &["--upstream-protocol", "http2"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (_agent, url) = start_agent(dir, &edge, "http", &upstream, &flags);
    assert_eq!(
        url,
        format!("https://grpc.tunnel.test:{}", edge.public_port)
    );
    runtime().block_on(async {
        let channel = connect(dir, edge.public_port, "grpc.tunnel.test", Some("alice")).await;
        assert_calls_of_every_kind(&channel).await;
        let seen = text(
            unary(
                &channel,
                "/moat.test.Echo/Whoami",
                b"",
                &[("moat-client-subject", "CN=forged")],
            )
            .await
            .expect("whoami"),
        );
        assert!(seen.contains("moat-client-subject: CN=alice\n"), "{seen}");
        assert!(!seen.contains("forged"), "{seen}");
    });
}
