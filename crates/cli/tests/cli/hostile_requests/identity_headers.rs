//! Identity and forwarding headers no spelling lets a client spoof, against Python's wsgiref.

use crate::gateway_support;

use super::{CURL_AS_ALICE, setup};

use gateway_support::{Moat, curl, start_python};

/// A WSGI app on Python's wsgiref, which maps `_` and `-` in header names to the same CGI
/// variable, printing what a CGI-style upstream believes about the caller.
const WSGIREF_APP: &str = r#"
import sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

def app(environ, start_response):
    names = ["HTTP_MOAT_CLIENT_SUBJECT", "HTTP_CLIENT_CERT", "HTTP_X_FORWARDED_FOR",
             "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED"]
    body = "".join(f"{name}={environ.get(name, '-')}\n" for name in names)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]

make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
"#;

#[test]
fn identity_and_forwarding_headers_cannot_be_spoofed_in_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(dir.path().join("wsgi_app.py"), WSGIREF_APP).unwrap();
    let wsgi = start_python(dir.path(), &["wsgi_app.py", "{port}"]);
    let upstream = format!("http://127.0.0.1:{}", wsgi.port);
    let moat = Moat::serve_mtls(dir.path(), "http", &upstream, &[]);
    let url = format!("https://localhost:{}/", moat.port());
    let spoofs = [
        "Moat_Client_Subject: CN=admin",
        "moat_client_subject: CN=admin",
        "Moat-Client_Subject: CN=admin",
        "Client_Cert: :QUJD:",
        "X_Forwarded_For: 203.0.113.66",
        "X-Forwarded_Host: evil.example",
        "Forwarded: for=203.0.113.66;host=evil.example",
    ];
    for protocol in ["--http1.1", "--http2"] {
        let mut args = [&[protocol][..], &CURL_AS_ALICE].concat();
        for spoof in &spoofs {
            args.extend(["-H", spoof]);
        }
        args.push(&url);
        let (code, out, err) = curl(dir.path(), &args);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("HTTP_MOAT_CLIENT_SUBJECT=CN=alice\n"),
            "{protocol}: {out}"
        );
        assert!(!out.contains("admin"), "{protocol}: {out}");
        assert!(!out.contains("QUJD"), "{protocol}: {out}");
        assert!(out.contains("HTTP_CLIENT_CERT=:"), "{protocol}: {out}");
        assert!(
            out.contains("HTTP_X_FORWARDED_FOR=127.0.0.1\n"),
            "{protocol}: {out}"
        );
        assert!(!out.contains("evil.example"), "{protocol}: {out}");
        assert!(!out.contains("203.0.113.66"), "{protocol}: {out}");
    }
}
