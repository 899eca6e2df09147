//! `moat http --inspect`: the request inspector's flags, and starting it beside the gateway or
//! the agent.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use moat_console::{
    Inspector, InspectorLimits, InspectorListener, ListenError, ListenPolicy, ServedEndpoint,
};
use moat_proxy::http::inspect::RequestObserver;
use moat_telemetry::Telemetry;

/// Where the inspector listens unless told: ngrok's address.
pub const DEFAULT_INSPECT: &str = "127.0.0.1:4040";

/// Flags of the request inspector.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Request inspector")]
pub struct InspectArgs {
    /// Serve the request inspector (a live page of every request with its client certificate,
    /// headers and bodies; replay; a JSON API on ngrok's paths) at http://ADDR/, or `off`.
    /// Default 127.0.0.1:4040; when that port is taken moat warns and runs without it.
    #[arg(long, value_name = "ADDR|off")]
    pub inspect: Option<String>,
    /// Requests kept (and as many refused handshakes); the oldest go first.
    #[arg(long, value_name = "N", default_value_t = InspectorLimits::default().max_requests)]
    pub inspect_max_requests: usize,
    /// Memory the kept requests may hold in all (headers and bodies), e.g. 32MiB.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub inspect_max_bytes: usize,
    /// Bytes of each request and response body kept, e.g. 64KiB; the rest is counted only.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub inspect_max_body: usize,
    /// Let --inspect listen on an address other machines reach. Whoever reaches it reads every
    /// captured request: headers, bodies and client certificates.
    #[arg(long)]
    pub inspect_allow_remote: bool,
}

/// An inspector whose socket is bound: what the gateway reports to, and what the command tells
/// it. It answers once [`Started::announce`] runs, after the endpoints started, so a moat that
/// fails to start announces nothing.
pub struct Started {
    /// The inspector's state.
    pub inspector: Inspector,
    /// Taken by [`Started::announce`].
    listener: Option<InspectorListener>,
}

impl Started {
    /// The proxy's observer.
    pub fn observer(&self) -> Arc<dyn RequestObserver> {
        Arc::new(self.inspector.clone())
    }

    /// Prints where the inspector is and serves it.
    pub fn announce(&mut self) {
        if let Some(listener) = self.listener.take() {
            // Tests and scripts parse this line; keep the URL last.
            println!(
                "moat: request inspector on http://{}",
                listener.local_addr()
            );
            tokio::spawn(listener.serve(std::future::pending()));
        }
    }
}

/// Binds the inspector `args` ask for, subscribed to `telemetry`'s refused handshakes; `None`
/// with `--inspect off`, or when the default port is taken (a warning says so). Must run
/// inside the runtime.
pub async fn start(args: &InspectArgs, telemetry: &Telemetry) -> anyhow::Result<Option<Started>> {
    let asked = args.inspect.as_deref().map(str::trim);
    if asked.is_some_and(|asked| asked.eq_ignore_ascii_case("off")) {
        return Ok(None);
    }
    let text = asked.unwrap_or(DEFAULT_INSPECT);
    let address = parse_address(text)?;
    let limits = InspectorLimits {
        max_requests: args.inspect_max_requests,
        max_bytes: args.inspect_max_bytes,
        max_body: args.inspect_max_body,
    };
    let inspector = Inspector::new(limits);
    let policy = if args.inspect_allow_remote {
        ListenPolicy::AllowRemote
    } else {
        ListenPolicy::LoopbackOnly
    };
    let listener = match InspectorListener::bind(address, inspector.clone(), policy).await {
        Ok(listener) => listener,
        Err(ListenError::Bind { address, source }) if asked.is_none() => {
            // Like ngrok: a second moat on one machine still runs, without its own inspector.
            // A log line, not a bare one on stderr: `--log-format json` stays JSON.
            tracing::warn!(
                %address,
                error = %source,
                "the request inspector cannot listen; running without it (give --inspect ADDR \
                 for another address, or --inspect off)"
            );
            return Ok(None);
        }
        Err(problem @ ListenError::NotLoopback { .. }) => {
            return Err(anyhow::anyhow!(
                "--inspect {text}: {problem} with --inspect-allow-remote"
            ));
        }
        Err(problem) => return Err(anyhow::anyhow!("--inspect {text}: {problem}")),
    };
    telemetry.subscribe(Arc::new(inspector.clone()));
    Ok(Some(Started {
        inspector,
        listener: Some(listener),
    }))
}

/// What the inspector lists as served: each endpoint of `config` with its URL (`urls`: name →
/// URL; an endpoint without one is listed without a URL until it is published).
pub fn served_endpoints<'a>(
    config: &moat_config::Config,
    urls: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<ServedEndpoint> {
    let urls: Vec<(&str, &str)> = urls.collect();
    config
        .endpoints
        .iter()
        .map(|endpoint| ServedEndpoint {
            name: endpoint.name.clone(),
            kind: match endpoint.kind {
                moat_config::EndpointKind::Http => "http".to_owned(),
                moat_config::EndpointKind::Tls => "tls".to_owned(),
            },
            url: urls
                .iter()
                .find(|(name, _)| *name == endpoint.name)
                .map(|(_, url)| (*url).to_owned())
                .unwrap_or_default(),
            upstream: {
                let upstream = &endpoint.upstream;
                let scheme = match upstream.scheme {
                    moat_config::UpstreamScheme::Http => "http",
                    moat_config::UpstreamScheme::Https => "https",
                    moat_config::UpstreamScheme::Tcp => "tcp",
                };
                format!("{scheme}://{}:{}", upstream.host, upstream.port)
            },
        })
        .collect()
}

/// `HOST:PORT` with an IP address, or `localhost:PORT`.
fn parse_address(text: &str) -> anyhow::Result<SocketAddr> {
    let literal = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_owned(),
    };
    literal.parse().with_context(|| {
        format!("--inspect {text}: give an address such as 127.0.0.1:4040, [::1]:4040 or off")
    })
}

/// A size in bytes: a number with an optional unit, B, KiB (K), MiB (M) or GiB (G).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 65536, 64KiB or 32MiB"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64KiB", 65536),
            ("64k", 65536),
            ("32MiB", 32 << 20),
            ("1 GiB", 1 << 30),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["", "MiB", "12 parsecs", "-1"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn addresses_read_as_ip_or_localhost() {
        assert_eq!(
            parse_address("localhost:4041").unwrap(),
            "127.0.0.1:4041".parse().unwrap()
        );
        assert!(parse_address("[::1]:0").is_ok());
        assert!(parse_address("example.com:4040").is_err());
    }
}
