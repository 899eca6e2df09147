//! The one test kit: certificates made with rcgen, a hook that records tokens and counts
//! changes, and `Admin`: the API behind its real TLS listener on 127.0.0.1, with an admin
//! client, recording every exchange for the OpenAPI check.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use moat_control::{
    AdminApi, AdminClient, AdminListener, AdminTls, EdgeHooks, HookError, IssuedToken, TokenRequest,
};
use moat_store::{JoinTokenRow, Store};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::Value;

/// A CA made for the test, able to sign.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).unwrap();
        TestCa {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate (clientAuth) with this CN.
    pub fn client(&self, common_name: &str) -> Pair {
        self.leaf(common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A server certificate (serverAuth) for 127.0.0.1 and localhost.
    pub fn server(&self) -> Pair {
        self.leaf(
            "admin.test",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn leaf(&self, common_name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The edge's side for the tests: records tokens in the store as the edge would and counts
/// the changes it is told of.
pub struct TestHooks {
    store: Store,
    changes: AtomicUsize,
    tokens: AtomicUsize,
}

impl TestHooks {
    /// How many times `changed` was called.
    pub fn changes(&self) -> usize {
        self.changes.load(Ordering::SeqCst)
    }
}

/// What makes the test hook refuse a token: this description.
pub const REFUSE_TOKEN: &str = "refuse, please";

impl EdgeHooks for TestHooks {
    fn issue_join_token(
        &self,
        request: TokenRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken, HookError>> + Send + '_>> {
        Box::pin(async move {
            if request.description == REFUSE_TOKEN {
                return Err(HookError::Refused {
                    field: None,
                    message:
                        "this edge's agents are trusted by --agent-cas; it makes no join tokens"
                            .into(),
                });
            }
            let number = self.tokens.fetch_add(1, Ordering::SeqCst);
            let now = unix_now();
            let row = JoinTokenRow {
                id: format!("{number:016x}"),
                secret_sha256: "0".repeat(64),
                created_at: now,
                expires_at: now + request.ttl.as_secs() as i64,
                grant_json: serde_json::to_string(&request.grant).unwrap(),
                used_at: None,
                used_by: None,
            };
            self.store
                .insert_join_token(&row)
                .await
                .map_err(|error| HookError::Failed {
                    message: error.to_string(),
                })?;
            Ok(IssuedToken {
                token: format!("moat-join-1.test-{}", row.id),
                row,
            })
        })
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The certificates of one test: the admin CA and an admin, the server's CA and certificate.
pub struct Pki {
    pub admin_ca: TestCa,
    pub admin: Pair,
    pub server_ca: TestCa,
    pub server: Pair,
}

impl Pki {
    pub fn new() -> Pki {
        let admin_ca = TestCa::new("moat admin CA");
        let admin = admin_ca.client("alice-admin");
        let server_ca = TestCa::new("moat edge CA");
        let server = server_ca.server();
        Pki {
            admin_ca,
            admin,
            server_ca,
            server,
        }
    }

    pub fn tls(&self) -> AdminTls {
        AdminTls {
            cert_chain_pem: self.server.cert_pem.clone(),
            key_pem: self.server.key_pem.clone(),
            admin_cas_pem: self.admin_ca.pem.clone().into_bytes(),
            admin_cas_origin: "admin-cas.pem".into(),
        }
    }
}

/// One request and its answer, kept for the OpenAPI check.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    /// The path without its query.
    pub path: String,
    pub request_body: Option<Value>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// The admin API served on 127.0.0.1 over a store, and an admin's client.
pub struct Admin {
    pub pki: Pki,
    pub store: Store,
    pub hooks: Arc<TestHooks>,
    pub api: Arc<AdminApi>,
    pub client: AdminClient,
    pub address: std::net::SocketAddr,
    pub exchanges: Mutex<Vec<Exchange>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Admin {
    /// Over a new SQLite store in a temporary directory.
    pub async fn sqlite() -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut admin = Admin::on(path.to_str().unwrap()).await;
        admin._dir = Some(dir);
        admin
    }

    /// Over the store at `location`.
    pub async fn on(location: &str) -> Admin {
        let store = Store::open(location).await.unwrap();
        let hooks = Arc::new(TestHooks {
            store: store.clone(),
            changes: AtomicUsize::new(0),
            tokens: AtomicUsize::new(0),
        });
        let api = Arc::new(AdminApi::new(store.clone(), hooks.clone()));
        let pki = Pki::new();
        let listener = AdminListener::bind("127.0.0.1:0".parse().unwrap(), pki.tls(), api.clone())
            .await
            .unwrap();
        let address = listener.local_addr();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(listener.serve(async move {
            let _ = stop.await;
        }));
        let client = AdminClient::new(
            &format!("https://{address}"),
            pki.admin.cert_pem.as_bytes(),
            pki.admin.key_pem.as_bytes(),
            pki.server_ca.pem.as_bytes(),
        )
        .unwrap();
        Admin {
            pki,
            store,
            hooks,
            api,
            client,
            address,
            exchanges: Mutex::new(Vec::new()),
            shutdown: Some(shutdown),
            _dir: None,
        }
    }

    /// One request through the listener, recorded.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, answer) = self
            .client
            .request(method.clone(), path, if_match, body.clone())
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        self.record(method, path, body, status, &headers, &answer);
        (status, headers, answer)
    }

    /// `call` for the status and body only.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call(method, path, None, body).await;
        (status, body)
    }

    /// A request straight to `AdminApi::handle`, for what the client cannot send (a body that
    /// is not declared JSON, one over the limit), recorded.
    pub async fn raw(&self, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Value) {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.api.handle(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let answer = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        self.record(method, &path, None, parts.status, &parts.headers, &answer);
        (parts.status, parts.headers, answer)
    }

    fn record(
        &self,
        method: Method,
        path: &str,
        request_body: Option<Value>,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Value,
    ) {
        self.exchanges.lock().unwrap().push(Exchange {
            method,
            path: path.split('?').next().unwrap_or(path).to_owned(),
            request_body,
            status,
            headers: headers.clone(),
            body: body.clone(),
        });
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// What a refusal must be: its status, code, the field it names and words of its message.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub status: StatusCode,
    pub code: &'a str,
    pub field: Option<&'a str>,
    pub words: &'a str,
}

/// A refusal of the request's `field` (400 MOAT_INVALID_FIELD) whose message has `words`.
pub fn invalid<'a>(field: &'a str, words: &'a str) -> Refusal<'a> {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "MOAT_INVALID_FIELD",
        field: Some(field),
        words,
    }
}

/// Any other refusal.
pub fn refusal<'a>(
    status: StatusCode,
    code: &'a str,
    field: Option<&'a str>,
    words: &'a str,
) -> Refusal<'a> {
    Refusal {
        status,
        code,
        field,
        words,
    }
}

impl Refusal<'_> {
    /// Asserts that `status` and `body` are this refusal.
    pub fn check(&self, status: StatusCode, body: &Value) {
        assert_eq!(status, self.status, "{body}");
        assert_eq!(body["error_code"], self.code, "{body}");
        assert_eq!(body["status_code"], self.status.as_u16(), "{body}");
        assert_eq!(body["details"]["field"].as_str(), self.field, "{body}");
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.contains(self.words), "{:?} not in {msg:?}", self.words);
    }
}

impl Admin {
    /// Sends a request that must be refused as `expected`; returns the answer's headers and body.
    pub async fn refuses(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
        expected: Refusal<'_>,
    ) -> (HeaderMap, Value) {
        let (status, headers, answer) = self.call(method, path, if_match, body).await;
        expected.check(status, &answer);
        (headers, answer)
    }
}
