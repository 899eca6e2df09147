//! The plain-HTTP listener of `--metrics-listen`: Prometheus `/metrics`, `/healthz` (the process
//! answers) and `/readyz` (every endpoint is bound and accepting).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Telemetry;

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsListenError {
    /// The address could not be bound.
    #[error(
        "cannot listen for metrics on {address}: {source}; choose another metrics address or \
         stop the process that uses it"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// The bound metrics listener, not yet serving.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    telemetry: Telemetry,
}

impl MetricsServer {
    /// Binds `address` (port 0 picks a free port).
    pub async fn bind(
        address: SocketAddr,
        telemetry: Telemetry,
    ) -> Result<MetricsServer, MetricsListenError> {
        let bind_error = |source| MetricsListenError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(MetricsServer {
            listener,
            local_addr,
            telemetry,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers scrapes and probes until the task is dropped; each connection is served on its own.
    pub async fn serve(self) {
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let telemetry = self.telemetry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let telemetry = telemetry.clone();
                    async move { Ok::<_, Infallible>(respond(&telemetry, &request)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            });
        }
    }
}

/// Routes one request.
fn respond<B>(telemetry: &Telemetry, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here\n".to_owned(),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, telemetry.metrics().render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if telemetry.is_ready() => text(StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: endpoints are starting or shutting down\n".to_owned(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    fn get(telemetry: &Telemetry, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(()).unwrap();
        let response = respond(telemetry, &request);
        let status = response.status();
        let body = body_text(response);
        (status, body)
    }

    fn body_text(response: Response<Full<Bytes>>) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn readyz_answers_503_until_the_gateway_is_serving_and_again_while_it_stops() {
        let telemetry = Telemetry::default();
        assert_eq!(
            get(&telemetry, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&telemetry, "/healthz"),
            (StatusCode::OK, "ok\n".to_owned())
        );
        telemetry.set_ready(true);
        assert_eq!(get(&telemetry, "/readyz").0, StatusCode::OK);
        telemetry.set_ready(false);
        assert_eq!(
            get(&telemetry, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn metrics_are_served_as_openmetrics_text() {
        let telemetry = Telemetry::default();
        let (status, body) = get(&telemetry, "/metrics");
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("# TYPE moat_config_reloads counter"),
            "{body}"
        );
        assert_eq!(get(&telemetry, "/other").0, StatusCode::NOT_FOUND);
    }
}
