//! What the agent asks the edge to publish: each endpoint of its configuration as an
//! `EndpointSpec`, with the material the edge needs when TLS ends there.

use std::path::Path;

use moat_config::{
    ClientAuthMode, EndpointConfig, EndpointKind, ProxyProtocolVersion, TerminateAt,
    UpstreamProtocol, UpstreamScheme,
};
use moat_tunnel::EndpointSpec;

/// Why an endpoint cannot be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The endpoint's rules could not be written out for the edge (not expected).
    #[error("endpoint {endpoint}: its access rules cannot be written out for the edge")]
    Rules {
        /// The endpoint.
        endpoint: String,
    },
    /// A file the edge needs could not be read.
    #[error("endpoint {endpoint}: cannot read {}: {source}", path.display())]
    Read {
        /// The endpoint.
        endpoint: String,
        /// The file.
        path: std::path::PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
}

/// The hostname the agent asks for: the endpoint's domain, or none (the edge assigns one
/// under its own domain) when the endpoint kept the default `localhost`.
pub(crate) fn hostname_of(endpoint: &EndpointConfig) -> String {
    if endpoint.domain == "localhost" {
        String::new()
    } else {
        endpoint.domain.clone()
    }
}

/// The registration of `endpoint`.
pub(crate) fn spec_of(endpoint: &EndpointConfig) -> Result<EndpointSpec, PublishError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| PublishError::Read {
            endpoint: endpoint.name.clone(),
            path: path.to_path_buf(),
            source,
        })
    };
    let read_all = |paths: &[std::path::PathBuf]| -> Result<Option<String>, PublishError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut text = String::new();
        for path in paths {
            text.push_str(&read(path)?);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        Ok(Some(text))
    };
    let at_edge = endpoint.terminate_at == TerminateAt::Edge;
    let mut spec = EndpointSpec {
        hostname: hostname_of(endpoint),
        kind: match endpoint.kind {
            EndpointKind::Http => moat_tunnel::EndpointKind::Http,
            EndpointKind::Tls => moat_tunnel::EndpointKind::Tls,
        },
        terminate_at: if at_edge {
            moat_tunnel::TerminateAt::Edge
        } else {
            moat_tunnel::TerminateAt::Agent
        },
        pool: endpoint.pool,
        client_certificate_optional: endpoint.client_auth == ClientAuthMode::Request,
        mutual_tls_cas_pem: None,
        certificate_pem: None,
        private_key_pem: None,
        crls_pem: None,
        rules: None,
        upstream: None,
        upstream_ca_pem: None,
        upstream_proxy_protocol: None,
        upstream_protocol: None,
    };
    if !at_edge {
        // The edge relays the client's bytes: it needs nothing of the endpoint's.
        return Ok(spec);
    }
    // The edge accepted the client, so the edge writes the header; the agent's own gateway
    // writes it for the endpoints it terminates.
    spec.upstream_proxy_protocol = match endpoint.upstream_proxy_protocol {
        Some(ProxyProtocolVersion::V1) => Some(1),
        Some(ProxyProtocolVersion::V2) => Some(2),
        None => None,
    };
    spec.upstream_protocol = match endpoint.upstream_protocol {
        UpstreamProtocol::Auto => None,
        protocol => Some(protocol.as_str().to_owned()),
    };
    spec.mutual_tls_cas_pem = read_all(&endpoint.mutual_tls_cas)?;
    spec.crls_pem = read_all(&endpoint.crls)?;
    if let (Some(crt), Some(key)) = (&endpoint.crt, &endpoint.key) {
        spec.certificate_pem = Some(read(crt)?);
        spec.private_key_pem = Some(read(key)?);
    }
    if let Some(upstream_ca) = &endpoint.upstream_ca {
        spec.upstream_ca_pem = Some(read(upstream_ca)?);
    }
    // The rules as the agent has them: its policy file's text, or those written in moat.toml.
    spec.rules = match &endpoint.policy_file {
        Some(policy) => Some(read(policy)?),
        None if endpoint.rule_specs.is_empty() => None,
        None => Some(
            moat_config::policy_text(&endpoint.rule_specs).ok_or_else(|| PublishError::Rules {
                endpoint: endpoint.name.clone(),
            })?,
        ),
    }
    .map(serde_json::Value::String);
    let upstream = &endpoint.upstream;
    let host = if upstream.host.contains(':') {
        format!("[{}]", upstream.host)
    } else {
        upstream.host.clone()
    };
    spec.upstream = Some(match upstream.scheme {
        UpstreamScheme::Http => format!("http://{host}:{}", upstream.port),
        UpstreamScheme::Https => format!("https://{host}:{}", upstream.port),
        UpstreamScheme::Tcp => format!("{host}:{}", upstream.port),
    });
    Ok(spec)
}
