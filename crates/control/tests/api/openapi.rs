//! The OpenAPI document against the router and the real answers: every route of
//! `moat_control::ROUTES` is documented with its methods (and nothing else is), every route was
//! answered in the tour, and every answer (success or refusal) and every request body sent
//! matches the document's schema for that route, method and status.

use http::Method;
use moat_control::ROUTES;
use serde_json::Value;

use crate::routes::tour;
use crate::schema::{resolve, validate};
use crate::support::{Admin, Exchange};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_answers_as_documented() {
    let admin = Admin::sqlite().await;
    tour(&admin).await;
    let (_, document) = admin.send(Method::GET, "/openapi.json", None).await;
    assert_eq!(
        document,
        serde_json::from_str::<Value>(moat_control::OPENAPI_JSON).unwrap(),
        "the API serves the embedded document"
    );

    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| *key != "parameters")
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .flat_map(|route| {
            route
                .methods()
                .map(|method| (route.path.to_owned(), method.to_owned()))
        })
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(
        documented, served,
        "the document and the router name the same routes"
    );

    let exchanges = admin.exchanges.lock().unwrap().clone();
    for (path, method) in &served {
        assert!(
            exchanges
                .iter()
                .any(|exchange| exchange.method.as_str() == method
                    && route_of(&exchange.path) == Some(path.as_str())
                    && exchange.status.is_success()),
            "the tour never had {method} {path} succeed"
        );
    }
    let mut problems = Vec::new();
    for exchange in &exchanges {
        if let Err(problem) = check(&document, exchange) {
            problems.push(format!(
                "{} {} → {}: {problem}",
                exchange.method, exchange.path, exchange.status
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} answers differ from the document:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        exchanges.len() > 80,
        "the tour checked {} answers",
        exchanges.len()
    );
}

/// The route template a concrete path belongs to.
fn route_of(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .find(|route| route.serves(path))
        .map(|route| route.path)
}

/// One exchange against the document: its status is documented for the operation, the body
/// matches that status's schema (none for 204), documented headers are there, and a request
/// body that was accepted matches the operation's request schema.
fn check(document: &Value, exchange: &Exchange) -> Result<(), String> {
    let error_schema = serde_json::json!({"$ref": "#/components/schemas/Error"});
    let operation = route_of(&exchange.path)
        .and_then(|path| document["paths"][path].get(exchange.method.as_str().to_lowercase()));
    let Some(operation) = operation else {
        // No such route, or not with this method: the document promises an Error body.
        return validate(document, &error_schema, &exchange.body, "$");
    };
    let documented = operation["responses"]
        .get(exchange.status.as_str())
        .ok_or_else(|| format!("status {} is not documented", exchange.status.as_str()))?;
    let response = resolve(document, documented)?;
    match response.pointer("/content/application~1json/schema") {
        Some(schema) => validate(document, schema, &exchange.body, "$")?,
        None if exchange.body.is_null() => {}
        None => {
            return Err(format!(
                "the document says no body, the API sent {}",
                exchange.body
            ));
        }
    }
    for header in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, _)| name)
    {
        if !exchange.headers.contains_key(header.as_str()) {
            return Err(format!("the documented header {header} is missing"));
        }
    }
    if let (Some(sent), true) = (&exchange.request_body, exchange.status.is_success()) {
        let schema = operation
            .pointer("/requestBody/content/application~1json/schema")
            .ok_or("a body was accepted where the document takes none")?;
        validate(document, schema, sent, "request")?;
    }
    Ok(())
}
