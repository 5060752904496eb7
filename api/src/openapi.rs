//! The OpenAPI 3.1 document, generated from the handlers and their types,
//! then completed with what every operation shares: the error envelope on
//! every error status, the statuses any `/v2` request may get (401 without a
//! valid token, 500, 503; and 400, 408, 413 on those with a body), the
//! `x-request-id` header; and, as served (`served`), what utoipa cannot
//! say: links, empty query values, the calling codes a `countryCode` holds.

use crate::envelope::{Pagination, Signature};
use crate::error::ErrorBody;
use crate::routes::{
    fraud_guard, phone_validations, project_flows, projects, webhook_deliveries, webhook_endpoints,
    webhook_event_types, webhook_messages,
};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Header, HttpMethod, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema};

mod served;
pub use served::{router, served};

#[derive(OpenApi)]
#[openapi(
    info(title = "OTP phone verification API", description = "Phone validations modelled on Verifik's API: create, send, validate."),
    paths(
        projects::create, projects::list, projects::read,
        project_flows::create, project_flows::list, project_flows::read, project_flows::update, project_flows::content::preview,
        phone_validations::create::create, phone_validations::validate::validate,
        phone_validations::read::read, phone_validations::read::list,
        phone_validations::next_channel::next_channel,
        phone_validations::stats::stats,
        webhook_deliveries::list,
        fraud_guard::list_blocks, fraud_guard::lift_block,
        fraud_guard::add, fraud_guard::list, fraud_guard::remove,
        webhook_endpoints::create, webhook_endpoints::list, webhook_endpoints::read,
        webhook_endpoints::update, webhook_endpoints::delete, webhook_endpoints::rotate_secret,
        webhook_messages::recover, webhook_messages::list, webhook_messages::read,
        webhook_messages::attempts, webhook_messages::resend,
        webhook_event_types::list,
    ),
    components(schemas(
        ErrorBody, Signature, Pagination, crate::stats::GroupBy,
        crate::webhook_events::EventTypeName, crate::store::webhook_messages::DeliveryStatus,
    )),
    modifiers(&BearerAuth, &Conventions),
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// What every operation shares (see the module's comment).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for (method, operation) in operations(item) {
                let has_body = matches!(method, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch);
                complete(operation, has_body);
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
    .collect()
}

/// Statuses any `/v2` operation may answer, with what they mean.
const EVERY_OPERATION: &[(&str, &str)] = &[
    ("401", "`invalid_token`: no, expired or badly signed token"),
    ("500", "`internal_error`"),
    ("503", "`service_unavailable`: the database is overloaded; try again"),
];

/// Statuses any operation with a body may answer.
const WITH_A_BODY: &[(&str, &str)] = &[
    (
        "400",
        "`invalid_json` (malformed body) or `invalid_<field>` (a field of the wrong type, out of range or not one of its values, or a string anywhere in the body holding a NUL character, which PostgreSQL cannot store)",
    ),
    ("408", "`request_timeout`: the body did not arrive in time (the connection is closed)"),
    ("413", "`payload_too_large`: a body over 64 KiB (the connection is closed)"),
];

fn complete(operation: &mut Operation, has_body: bool) {
    let responses = &mut operation.responses.responses;
    let shared = EVERY_OPERATION.iter().chain(if has_body { WITH_A_BODY } else { &[] });
    for (status, description) in shared {
        responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(*description).build()));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if status.starts_with('4') || status.starts_with('5') {
            error_body(response);
        }
        response.headers.insert(
            "x-request-id".into(),
            Header::builder()
                .schema(String::schema())
                .description(Some(
                    "The request id (also `id` in the body), in every log line of the request",
                ))
                .build(),
        );
    }
}

/// Every error answer is the contract's error envelope.
fn error_body(response: &mut Response) {
    if response.content.is_empty() {
        response.content.insert(
            "application/json".into(),
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        );
    }
    if response.description.is_empty() {
        response.description = "An error, in the error envelope".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashSet;

    fn doc() -> Value {
        served().clone()
    }

    fn each_operation(doc: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        found
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = doc();
        let mut seen = HashSet::new();
        for (method, path, operation) in each_operation(&doc) {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(seen.insert(id.to_owned()), "{method} {path}: operationId {id} twice");
        }
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn every_operation_declares_its_envelopes_and_errors() {
        let doc = doc();
        for (method, path, operation) in each_operation(&doc) {
            let responses = operation["responses"].as_object().unwrap();
            // Webhook endpoints are created with 201 (docs/contract.md §13).
            let ok = if operation["operationId"] == "createWebhookEndpoint" {
                "201"
            } else {
                "200"
            };
            let mut expected = vec![ok, "401", "500", "503"];
            if method == "post" || method == "put" || method == "patch" {
                expected.extend(["400", "408", "413"]);
            }
            if path.ends_with("{id}") {
                expected.push("404");
            }
            let paged = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "page");
            if paged {
                expected.push("400");
            }
            for status in expected {
                assert!(responses.contains_key(status), "{method} {path}: no {status}");
            }
            for (status, response) in responses {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{method} {path} {status}: no x-request-id"
                );
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if status.starts_with('2') {
                    let name = schema.as_str().unwrap_or_default();
                    // Paged lists carry `pagination`; short lists (blocks,
                    // the safe list, stats) and single objects do not.
                    let expected = if paged { "List" } else { "Success" };
                    assert!(
                        name.contains(expected),
                        "{method} {path}: 200 is {name}, not a {expected}"
                    );
                } else {
                    assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
                }
            }
        }
    }

    #[test]
    fn enums_are_spelled_as_serialized() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ValidationStatus"]["enum"],
            serde_json::json!(["new", "sent", "validated", "failed"])
        );
        assert_eq!(schemas["FlowType"]["enum"], serde_json::json!(["login", "onboarding"]));
        assert_eq!(
            schemas["Gateway"]["enum"],
            serde_json::json!(["sms", "whatsapp", "voice", "none"])
        );
    }

    #[test]
    fn lists_bound_page_and_limit() {
        let doc = doc();
        let limit = doc["paths"]["/v2/phone-validations"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .cloned()
            .unwrap();
        assert_eq!(
            (limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()),
            (Some(1), Some(100))
        );
    }

    #[test]
    fn created_resources_link_to_what_follows() {
        let doc = doc();
        let links = &doc["paths"]["/v2/phone-validations"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["GetPhoneValidation"]["operationId"], "getPhoneValidation");
        assert_eq!(
            links["ValidatePhoneValidation"]["operationId"],
            "validatePhoneValidation"
        );
        let links = &doc["paths"]["/v2/projects"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["CreateProjectFlow"]["operationId"], "createProjectFlow");
        let links = &doc["paths"]["/v2/project-flows"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["CreatePhoneValidation"]["operationId"], "createPhoneValidation");
        let links = &doc["paths"]["/v2/webhook-endpoints"]["post"]["responses"]["201"]["links"];
        for (name, operation) in [
            ("GetWebhookEndpoint", "getWebhookEndpoint"),
            ("DeleteWebhookEndpoint", "deleteWebhookEndpoint"),
            ("RecoverWebhookEndpoint", "recoverWebhookEndpoint"),
        ] {
            assert_eq!(links[name]["operationId"], operation);
            assert_eq!(links[name]["parameters"]["id"], "$response.body#/data/_id");
        }
        // The entry's `data._id`, not the envelope's request `id`.
        let links = &doc["paths"]["/v2/safe-list"]["post"]["responses"]["200"]["links"];
        assert_eq!(
            links["RemoveSafeListEntry"]["parameters"]["id"],
            "$response.body#/data/_id"
        );
    }

    #[test]
    fn country_codes_are_the_calling_codes_the_server_knows() {
        let doc = doc();
        for name in ["CreatePhoneValidation", "ValidatePhoneValidation", "NewSafeListEntry"] {
            let pattern = doc["components"]["schemas"][name]["properties"]["countryCode"]["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no pattern"));
            assert!(pattern.starts_with(r"^\+(?:1|7|20|"), "{name}: {pattern}");
            assert!(pattern.contains("|507|") && !pattern.contains("|999|"), "{name}");
        }
    }

    /// Every `$ref` names a schema of the document (parameters' schemas are
    /// not collected by utoipa: they are listed in `components`).
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    for (key, item) in map {
                        match (key.as_str(), item.as_str()) {
                            ("$ref", Some(reference)) => found.push(reference),
                            _ => refs(item, found),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
                _ => {}
            }
        }
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50);
        for reference in found {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference}"));
            assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
        }
    }

    /// `cargo test -p api --lib print_the_document -- --ignored --nocapture`
    #[test]
    #[ignore = "prints the document"]
    fn print_the_document() {
        println!("{}", serde_json::to_string_pretty(&doc()).unwrap());
    }
}
