//! CEL expressions on rules, over the variable names of ngrok's Traffic Policy.
//!
//! The variables, with their CEL types (`null` where the fact is absent, e.g. no certificate):
//!
//! | variable | type |
//! |---|---|
//! | `conn.client_ip`, `conn.server_ip` | string |
//! | `conn.client_port`, `conn.server_port` | int |
//! | `conn.tls.version` | string, `"TLSv1.3"` or `"TLSv1.2"` (null on tls endpoints, which decide during the handshake) |
//! | `conn.tls.sni` | string or null |
//! | `conn.tls.client` | map, or null without a client certificate |
//! | `conn.tls.client.subject.common_name`, `conn.tls.client.issuer.common_name` | string |
//! | `conn.tls.client.subject.` / `.issuer.` `organization`, `organizational_unit`, `country`, `province`, `locality` | list of strings |
//! | `conn.tls.client.san.dns_names`, `.uris`, `.email_addresses`, `.ip_addresses` | list of strings |
//! | `conn.tls.client.serial_number` | string, lowercase hex |
//! | `conn.tls.client.validity.not_before`, `.not_after` | string, RFC 3339 UTC (compares in time order) |
//! | `req.method`, `req.host`, `req.url.path`, `req.url.query` | string (null on `tls` endpoints) |
//! | `req.headers` | map from lowercase name to list of values |

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Program, Value};
use moat_trust::{ClientIdentity, SubjectAltName};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::request::{Client, Request};

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpressionError {
    /// CEL syntax error.
    #[error("does not compile: {0}")]
    Syntax(String),
    /// A name that is not one of the variables moat provides.
    #[error(
        "unknown variable {name}; moat provides conn.client_ip, conn.tls.sni, conn.tls.version, \
         conn.tls.client.{{subject,issuer,san,serial_number,validity}}.*, req.method, req.host, \
         req.url.path, req.url.query and req.headers"
    )]
    UnknownVariable {
        /// The name as written, e.g. `conn.tls.client.subject.cn`.
        name: String,
    },
}

/// A compiled CEL expression that must evaluate to `true`.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    program: Arc<Program>,
}

impl Expression {
    /// Compiles `source`, refusing names outside the documented variables.
    pub fn compile(source: &str) -> Result<Expression, ExpressionError> {
        let program = Program::compile(source)
            .map_err(|errors| ExpressionError::Syntax(errors.to_string().replace('\n', " ")))?;
        let mut unknown = Vec::new();
        check_names(program.expression(), &mut Vec::new(), &mut unknown);
        if let Some(name) = unknown.into_iter().next() {
            return Err(ExpressionError::UnknownVariable { name });
        }
        Ok(Expression {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Ok(true)` when the expression holds; an evaluation error (a missing header, a field of a
    /// null certificate) is `Err` with CEL's description, and counts as not holding.
    pub(crate) fn holds(&self, variables: &Variables) -> Result<bool, String> {
        let mut context = Context::default();
        context.add_variable_from_value("conn", variables.conn.clone());
        context.add_variable_from_value("req", variables.req.clone());
        match self.program.execute(&context) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(format!("evaluates to {other:?}, not a boolean")),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// The `conn` and `req` values of one request, built once for all of a rule's expressions.
pub(crate) struct Variables {
    conn: Value,
    req: Value,
}

impl Variables {
    pub(crate) fn new(request: &Request<'_>, client: Option<&Client<'_>>) -> Variables {
        let mut tls = HashMap::new();
        tls.insert("version".to_owned(), optional(request.tls_version));
        tls.insert("sni".to_owned(), optional(request.sni));
        tls.insert(
            "client".to_owned(),
            client.map_or(Value::Null, |client| certificate_value(client.identity)),
        );
        let mut conn = HashMap::new();
        conn.insert(
            "client_ip".to_owned(),
            Value::from(crate::selector::canonical(request.source_ip).to_string()),
        );
        conn.insert(
            "client_port".to_owned(),
            Value::Int(i64::from(request.source_port)),
        );
        conn.insert(
            "server_ip".to_owned(),
            optional(request.server.map(|s| s.ip().to_string()).as_deref()),
        );
        conn.insert(
            "server_port".to_owned(),
            request
                .server
                .map_or(Value::Null, |s| Value::Int(i64::from(s.port()))),
        );
        conn.insert("tls".to_owned(), Value::from(tls));

        let req = match &request.http {
            None => Value::Null,
            Some(http) => {
                let mut url = HashMap::new();
                url.insert("path".to_owned(), Value::from(http.path));
                url.insert("query".to_owned(), Value::from(http.query.unwrap_or("")));
                let mut headers: HashMap<String, Vec<String>> = HashMap::new();
                if let Some(map) = http.headers {
                    for (name, value) in map {
                        headers
                            .entry(name.as_str().to_owned())
                            .or_default()
                            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
                    }
                }
                let headers: HashMap<String, Value> = headers
                    .into_iter()
                    .map(|(name, values)| (name, Value::from(values)))
                    .collect();
                let mut req = HashMap::new();
                req.insert("method".to_owned(), Value::from(http.method));
                req.insert("host".to_owned(), optional(http.host));
                req.insert("url".to_owned(), Value::from(url));
                req.insert("headers".to_owned(), Value::from(headers));
                Value::from(req)
            }
        };
        Variables {
            conn: Value::from(conn),
            req,
        }
    }
}

fn optional(text: Option<&str>) -> Value {
    text.map_or(Value::Null, Value::from)
}

/// `conn.tls.client`: the verified certificate's fields.
fn certificate_value(identity: &ClientIdentity) -> Value {
    let (subject, issuer) = match X509Certificate::from_der(identity.certificate.as_ref()) {
        Ok((_, cert)) => (name_value(cert.subject()), name_value(cert.issuer())),
        // The verifier parsed it already; an empty map keeps the other fields usable.
        Err(_) => (
            Value::from(HashMap::<String, Value>::new()),
            Value::from(HashMap::<String, Value>::new()),
        ),
    };
    let sans_of = |pick: fn(&SubjectAltName) -> Option<String>| -> Value {
        Value::from(identity.sans.iter().filter_map(pick).collect::<Vec<_>>())
    };
    let mut san = HashMap::new();
    san.insert(
        "dns_names".to_owned(),
        sans_of(|s| match s {
            SubjectAltName::Dns(v) => Some(v.clone()),
            _ => None,
        }),
    );
    san.insert(
        "uris".to_owned(),
        sans_of(|s| match s {
            SubjectAltName::Uri(v) => Some(v.clone()),
            _ => None,
        }),
    );
    san.insert(
        "email_addresses".to_owned(),
        sans_of(|s| match s {
            SubjectAltName::Email(v) => Some(v.clone()),
            _ => None,
        }),
    );
    san.insert(
        "ip_addresses".to_owned(),
        sans_of(|s| match s {
            SubjectAltName::Ip(v) => Some(v.to_string()),
            _ => None,
        }),
    );
    let mut validity = HashMap::new();
    validity.insert(
        "not_before".to_owned(),
        Value::from(rfc3339(identity.not_before)),
    );
    validity.insert(
        "not_after".to_owned(),
        Value::from(rfc3339(identity.not_after)),
    );

    let mut client = HashMap::new();
    client.insert("subject".to_owned(), subject);
    client.insert("issuer".to_owned(), issuer);
    client.insert("san".to_owned(), Value::from(san));
    client.insert(
        "serial_number".to_owned(),
        Value::from(identity.serial_hex.clone()),
    );
    client.insert("validity".to_owned(), Value::from(validity));
    Value::from(client)
}

/// A distinguished name as ngrok names its parts.
fn name_value(name: &X509Name<'_>) -> Value {
    let texts = |values: Vec<Option<&str>>| -> Vec<String> {
        values.into_iter().flatten().map(str::to_owned).collect()
    };
    let mut map = HashMap::new();
    let common_names = texts(name.iter_common_name().map(|a| a.as_str().ok()).collect());
    map.insert(
        "common_name".to_owned(),
        common_names
            .last()
            .map_or(Value::Null, |cn| Value::from(cn.clone())),
    );
    map.insert(
        "organization".to_owned(),
        Value::from(texts(
            name.iter_organization().map(|a| a.as_str().ok()).collect(),
        )),
    );
    map.insert(
        "organizational_unit".to_owned(),
        Value::from(texts(
            name.iter_organizational_unit()
                .map(|a| a.as_str().ok())
                .collect(),
        )),
    );
    map.insert(
        "country".to_owned(),
        Value::from(texts(
            name.iter_country().map(|a| a.as_str().ok()).collect(),
        )),
    );
    map.insert(
        "province".to_owned(),
        Value::from(texts(
            name.iter_state_or_province()
                .map(|a| a.as_str().ok())
                .collect(),
        )),
    );
    map.insert(
        "locality".to_owned(),
        Value::from(texts(
            name.iter_locality().map(|a| a.as_str().ok()).collect(),
        )),
    );
    Value::from(map)
}

/// Seconds since the epoch as RFC 3339 in UTC (`2030-01-01T00:00:00Z`), which sorts in time order.
fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The documented variables as a tree; `AnyKey` is a map whose keys are data (headers).
enum Node {
    Leaf,
    Fields(&'static [(&'static str, Node)]),
    AnyKey,
}

const NAME_FIELDS: &[(&str, Node)] = &[
    ("common_name", Node::Leaf),
    ("organization", Node::Leaf),
    ("organizational_unit", Node::Leaf),
    ("country", Node::Leaf),
    ("province", Node::Leaf),
    ("locality", Node::Leaf),
];

const ROOTS: &[(&str, Node)] = &[
    (
        "conn",
        Node::Fields(&[
            ("client_ip", Node::Leaf),
            ("client_port", Node::Leaf),
            ("server_ip", Node::Leaf),
            ("server_port", Node::Leaf),
            (
                "tls",
                Node::Fields(&[
                    ("version", Node::Leaf),
                    ("sni", Node::Leaf),
                    (
                        "client",
                        Node::Fields(&[
                            ("subject", Node::Fields(NAME_FIELDS)),
                            ("issuer", Node::Fields(NAME_FIELDS)),
                            (
                                "san",
                                Node::Fields(&[
                                    ("dns_names", Node::Leaf),
                                    ("uris", Node::Leaf),
                                    ("email_addresses", Node::Leaf),
                                    ("ip_addresses", Node::Leaf),
                                ]),
                            ),
                            ("serial_number", Node::Leaf),
                            (
                                "validity",
                                Node::Fields(&[
                                    ("not_before", Node::Leaf),
                                    ("not_after", Node::Leaf),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            ),
        ]),
    ),
    (
        "req",
        Node::Fields(&[
            ("method", Node::Leaf),
            ("host", Node::Leaf),
            (
                "url",
                Node::Fields(&[("path", Node::Leaf), ("query", Node::Leaf)]),
            ),
            ("headers", Node::AnyKey),
        ]),
    ),
];

/// CEL's type names, which may appear as identifiers (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// Collects every name in `expr` that is neither a documented variable (or a prefix of one), a
/// comprehension variable, nor a CEL type name.
fn check_names(expr: &IdedExpr, bound: &mut Vec<String>, unknown: &mut Vec<String>) {
    match &expr.expr {
        Expr::Ident(_) | Expr::Select(_) => {
            let mut segments = Vec::new();
            let mut current = expr;
            loop {
                match &current.expr {
                    Expr::Select(select) => {
                        segments.push(select.field.as_str());
                        current = &select.operand;
                    }
                    Expr::Ident(name) => {
                        segments.push(name.as_str());
                        segments.reverse();
                        check_path(&segments, bound, unknown);
                        return;
                    }
                    _ => {
                        // A field of a computed value (`x[0].name`): only the inner part names variables.
                        check_names(current, bound, unknown);
                        return;
                    }
                }
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                check_names(target, bound, unknown);
            }
            for arg in &call.args {
                check_names(arg, bound, unknown);
            }
        }
        Expr::Comprehension(comprehension) => {
            check_names(&comprehension.iter_range, bound, unknown);
            check_names(&comprehension.accu_init, bound, unknown);
            let before = bound.len();
            bound.push(comprehension.iter_var.clone());
            if let Some(second) = &comprehension.iter_var2 {
                bound.push(second.clone());
            }
            bound.push(comprehension.accu_var.clone());
            check_names(&comprehension.loop_cond, bound, unknown);
            check_names(&comprehension.loop_step, bound, unknown);
            check_names(&comprehension.result, bound, unknown);
            bound.truncate(before);
        }
        Expr::List(list) => {
            for element in &list.elements {
                check_names(element, bound, unknown);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    check_names(&entry.key, bound, unknown);
                    check_names(&entry.value, bound, unknown);
                }
            }
        }
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    check_names(&field.value, bound, unknown);
                }
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Checks one dotted name, root first.
fn check_path(segments: &[&str], bound: &[String], unknown: &mut Vec<String>) {
    let Some((root, fields)) = segments.split_first() else {
        return;
    };
    if bound.iter().any(|name| name == root) || TYPE_NAMES.contains(root) {
        return;
    }
    let Some((_, node)) = ROOTS.iter().find(|(name, _)| name == root) else {
        unknown.push((*root).to_owned());
        return;
    };
    let mut node = node;
    for (depth, field) in fields.iter().enumerate() {
        match node {
            Node::AnyKey => return,
            Node::Leaf => {
                unknown.push(segments[..depth + 2].join("."));
                return;
            }
            Node::Fields(children) => match children.iter().find(|(name, _)| name == field) {
                Some((_, child)) => node = child,
                None => {
                    unknown.push(segments[..depth + 2].join("."));
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_names_compile_and_others_are_refused() {
        for good in [
            "conn.tls.client.subject.common_name == 'service-a'",
            "conn.tls.client.san.dns_names.exists(n, n.endsWith('.internal'))",
            "'x' in req.headers['x-team'] && req.url.path.startsWith('/api')",
            "has(req.headers.authorization)",
            "conn.client_ip == '127.0.0.1' || conn.tls.sni == 'a'",
            "conn.tls.client.validity.not_after > '2030-01-01T00:00:00Z'",
        ] {
            Expression::compile(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, name) in [
            (
                "conn.tls.client.subject.cn == 'x'",
                "conn.tls.client.subject.cn",
            ),
            ("request.path == '/'", "request"),
            ("conn.client_ip.octets == 1", "conn.client_ip.octets"),
        ] {
            match Expression::compile(bad) {
                Err(ExpressionError::UnknownVariable { name: found }) => assert_eq!(found, name),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            Expression::compile("conn.tls.client.subject.common_name =="),
            Err(ExpressionError::Syntax(_))
        ));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
