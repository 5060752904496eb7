//! The server refuses what its OpenAPI document forbids and accepts what it
//! allows (the cases schemathesis found, issue 18 item 11), and the
//! document's links lead where they say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{Response, TestApp};

#[tokio::test]
async fn a_query_parameter_given_twice_is_refused() {
    let app = TestApp::spawn().await;
    for (path, message) in [
        ("/v2/phone-validations?page=1&page=2", "400:invalid_page"),
        ("/v2/projects?limit=5&page=1&limit=5", "400:invalid_limit"),
        (
            "/v2/phone-validations/stats?groupBy=day&groupBy=country",
            "400:invalid_groupBy",
        ),
        ("/v2/project-flows?project=&project=", "400:invalid_project"),
    ] {
        let answer = app.get(path).await;
        assert_eq!(
            (answer.status, answer.message()),
            (StatusCode::BAD_REQUEST, message),
            "{path}"
        );
    }
}

/// The contract's lists spell "no filter" as an empty value
/// (`?project=&projectFlow=&status=…`): the server takes it so, and the
/// document says so (`allowEmptyValue`) rather than forbidding it.
#[tokio::test]
async fn an_empty_query_value_is_no_filter_and_the_document_allows_it() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    app.create_validation(&project, &flow, "62617731").await;
    let list = app
        .get("/v2/phone-validations?page=&limit=&project=&projectFlow=&status=&type=&countryCode=&phone=")
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert_eq!(list.data().as_array().map(Vec::len), Some(1));
    let stats = app
        .get("/v2/phone-validations/stats?from=&to=&groupBy=&project=&projectFlow=")
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);

    let doc = app.request(Method::GET, "/openapi.json", None, None).await.body;
    for (path, name) in [
        ("/v2/phone-validations", "projectFlow"),
        ("/v2/phone-validations", "page"),
        ("/v2/phone-validations/stats", "groupBy"),
        ("/v2/phone-validations/stats", "project"),
    ] {
        let parameter = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert_eq!(parameter["allowEmptyValue"], true, "{path} {name}");
    }
}

/// `page` may be 1..=10000 whatever the `limit`; a list reaches its first
/// 10,000 rows, so a page past them is empty rather than refused.
#[tokio::test]
async fn every_page_the_document_allows_is_answered() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    app.create_validation(&project, &flow, "62617731").await;
    let deep = app.get("/v2/phone-validations?page=10000&limit=100").await;
    assert_eq!(deep.status, StatusCode::OK, "{:?}", deep.body);
    assert_eq!(deep.data(), &json!([]));
    assert_eq!(deep.body["pagination"]["total"], 1);
    assert_eq!(app.get("/v2/projects?page=10001").await.message(), "400:invalid_page");
}

async fn lift(app: &TestApp, prefix: &str) -> Response {
    let path = format!("/v2/fraud-guard/blocks/{prefix}");
    app.request(Method::DELETE, &path, Some(&app.token), None).await
}

/// Prefixes and list filters are exactly what their patterns say: no
/// trimming beyond them.
#[tokio::test]
async fn prefixes_and_country_codes_follow_their_patterns() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    app.create_validation(&project, &flow, "62617731").await;
    for refused in ["%20%2B507626", "%2B0507", "%2B50762612", "%2B"] {
        assert_eq!(lift(&app, refused).await.message(), "400:invalid_prefix", "{refused}");
    }
    for well_formed in ["%2B507626", "%2B1", "%2B5076262"] {
        let answer = lift(&app, well_formed).await;
        assert_eq!(answer.message(), "404:fraud_guard_block_not_found", "{well_formed}");
    }
    for accepted in ["%2B507", "507", "%20507"] {
        let list = app.get(&format!("/v2/phone-validations?countryCode={accepted}")).await;
        assert_eq!(list.data().as_array().map(Vec::len), Some(1), "{accepted}");
    }
    for refused in ["%20%2B507", "%2B507%20", "%2B999"] {
        let list = app.get(&format!("/v2/phone-validations?countryCode={refused}")).await;
        assert_eq!(list.message(), "400:invalid_countryCode", "{refused}");
    }
}

/// The value a link names in a response, as a client (or schemathesis)
/// evaluates `$response.body#/…`.
fn follow(expression: &Value, body: &Value) -> String {
    let pointer = expression.as_str().unwrap().strip_prefix("$response.body#").unwrap();
    body.pointer(pointer).and_then(Value::as_str).unwrap().to_owned()
}

#[tokio::test]
async fn the_safe_list_link_removes_the_entry_it_created() {
    let app = TestApp::spawn().await;
    let doc = app.request(Method::GET, "/openapi.json", None, None).await.body;
    let link = &doc["paths"]["/v2/safe-list"]["post"]["responses"]["200"]["links"]["RemoveSafeListEntry"];
    assert_eq!(link["operationId"], "removeSafeListEntry");
    let added = app
        .post("/v2/safe-list", json!({"countryCode": "+507", "phone": "62617731"}))
        .await;
    assert_eq!(added.status, StatusCode::OK);
    let id = follow(&link["parameters"]["id"], &added.body);
    let path = format!("/v2/safe-list/{id}");
    let removed = app.request(Method::DELETE, &path, Some(&app.token), None).await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    assert_eq!(removed.data()["phone"], "62617731");
}
