//! The document as served (built once): the generated one, completed with
//! what utoipa cannot say. It is JSON by then, because utoipa 5.5 writes a
//! link's `operationId` and `requestBody` in snake case and has no
//! `allowEmptyValue` on a parameter.
//!
//! - Links from a created resource to what a client does next with it, so a
//!   client (and schemathesis's stateful phase) follows `data._id`.
//! - An empty query value is no filter (`?project=&status=`, as the
//!   contract's lists spell it): every optional query parameter allows it.
//! - A `countryCode` is one of the calling codes the server knows, not any
//!   1-4 digits: `+999` is `400:invalid_countryCode`.
//! - A flow's `testNumbers`: E.164 keys, codes of digits, at most 100.
//! - `webhooks`: what each webhook event type POSTs to an endpoint
//!   (`crate::webhook_events`); utoipa 5 does not model the section.

use serde_json::{json, Value};
use shared::domain::CountryCode;
use std::sync::OnceLock;

/// Request bodies whose `countryCode` is parsed as a calling code.
const BODIES_WITH_A_COUNTRY_CODE: &[&str] = &[
    "CreatePhoneValidation",
    "ValidatePhoneValidation",
    "NewSafeListEntry",
    "PreviewRequest",
];

/// `GET /openapi.json`, merged into the public router by `lib.rs` (the
/// router does not import this module, which imports the routes).
pub fn router() -> axum::Router {
    axum::Router::new().route("/openapi.json", axum::routing::get(|| async { axum::Json(served()) }))
}

pub fn served() -> &'static Value {
    static SERVED: OnceLock<Value> = OnceLock::new();
    SERVED.get_or_init(|| {
        let mut doc = serde_json::to_value(super::document()).unwrap_or_default();
        let codes = calling_codes();
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            for operation in paths
                .values_mut()
                .filter_map(Value::as_object_mut)
                .flat_map(|item| item.values_mut())
            {
                let links = operation.get("operationId").and_then(Value::as_str).and_then(links);
                if let Some(links) = links {
                    let ok = ["/responses/200", "/responses/201"]
                        .into_iter()
                        .find(|status| operation.pointer(status).is_some());
                    if let Some(ok) = ok.and_then(|status| operation.pointer_mut(status)) {
                        ok["links"] = links;
                    }
                }
                for parameter in operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    query_parameter(parameter, &codes);
                }
            }
        }
        for name in ["PhoneSettings", "PhoneSettingsPatch"] {
            if let Some(numbers) = doc.pointer_mut(&format!("/components/schemas/{name}/properties/testNumbers")) {
                test_numbers(numbers);
            }
        }
        for name in BODIES_WITH_A_COUNTRY_CODE {
            if let Some(country) = doc.pointer_mut(&format!("/components/schemas/{name}/properties/countryCode")) {
                country["pattern"] = format!(r"^\+(?:{codes})$").into();
            }
        }
        doc["webhooks"] = crate::webhook_events::openapi_webhooks();
        doc
    })
}

/// An optional query parameter may be empty; a list's `countryCode` may
/// leave out its `+` (or send it unencoded, when it arrives as a space).
fn query_parameter(parameter: &mut Value, codes: &str) {
    if parameter["in"] != "query" || parameter["required"] == true {
        return;
    }
    parameter["allowEmptyValue"] = true.into();
    if parameter["name"] == "countryCode" {
        parameter["schema"]["pattern"] = format!(r"^[+ ]?(?:{codes})$").into();
    }
}

/// A flow's test numbers (`settings::check_test_numbers`): at most 100, each
/// E.164 (`+` and 4 to 17 digits) with a code of digits (as many as the
/// flow's `otpLength`, which the description says).
fn test_numbers(schema: &mut Value) {
    schema["description"] = "E.164 number → fixed code of the flow's `otpLength` digits: those numbers get no \
        message and accept that code (app-store review, demos); at most 100"
        .into();
    schema["maxProperties"] = 100.into();
    schema["propertyNames"] = json!({"pattern": r"^\+[0-9]{4,17}$"});
    schema["additionalProperties"] = json!({"type": "string", "pattern": "^[0-9]{4,10}$"});
}

/// The calling codes the server knows (`CountryCode::parse`), as a regular
/// expression's alternatives: `1|7|20|…`.
fn calling_codes() -> String {
    (1..10_000u16)
        .filter(|code| CountryCode::parse(&format!("+{code}")).is_ok())
        .map(|code| code.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// The links of an operation's 200 (or 201) answer.
fn links(operation_id: &str) -> Option<Value> {
    let id = "$response.body#/data/_id";
    let links = match operation_id {
        "createProject" => json!({
            "GetProject": {"operationId": "getProject", "parameters": {"id": id}, "description": "Read the project"},
            "CreateProjectFlow": {
                "operationId": "createProjectFlow",
                "requestBody": {
                    "project": id,
                    "type": "login",
                    "phone": {
                        "resendCooldownSeconds": 0,
                        "maxSendsPerHour": 1000,
                        "testNumbers": {"+50762617737": "123456"},
                    },
                },
                "description": "Create a flow in the project, with a test number (as for an app-store review)",
            },
            "ListProjectFlows": {"operationId": "listProjectFlows", "parameters": {"project": id}, "description": "The project's flows"},
        }),
        "createProjectFlow" => json!({
            "GetProjectFlow": {"operationId": "getProjectFlow", "parameters": {"id": id}, "description": "Read the flow"},
            "UpdateProjectFlow": {"operationId": "updateProjectFlow", "parameters": {"id": id}, "description": "Change the flow"},
            "CreatePhoneValidation": {
                "operationId": "createPhoneValidation",
                // One key per flow: a retry of this create replays its answer.
                "parameters": {"header.Idempotency-Key": id},
                "requestBody": {
                    "project": "$response.body#/data/project",
                    "projectFlow": id,
                    "countryCode": "+507",
                    "phone": "62617737",
                    "validationMethod": "verificationCode",
                    "type": "login",
                },
                "description": "Send a code with the flow (the seed's request, to the flow's test number)",
            },
        }),
        "createPhoneValidation" => json!({
            "GetPhoneValidation": {"operationId": "getPhoneValidation", "parameters": {"id": id}, "description": "Read the validation"},
            "NextChannel": {"operationId": "nextChannelPhoneValidation", "parameters": {"id": id}, "description": "Send the code by the flow's next channel now"},
            "ValidatePhoneValidation": {
                "operationId": "validatePhoneValidation",
                "requestBody": {
                    "phone": "$response.body#/data/phone",
                    "countryCode": "$response.body#/data/countryCode",
                    "project": "$response.body#/data/project",
                    "projectFlow": "$response.body#/data/projectFlow",
                    "phoneGateway": "$response.body#/data/phoneGateway",
                    "otp": "123456",
                },
                "description": "Check the code sent to the phone (the test number's)",
            },
            "ListWebhookDeliveries": {
                "operationId": "listWebhookDeliveries",
                "parameters": {"validation": id},
                "description": "The webhook deliveries of the validation",
            },
        }),
        "createWebhookEndpoint" => json!({
            "GetWebhookEndpoint": {"operationId": "getWebhookEndpoint", "parameters": {"id": id}, "description": "Read the endpoint"},
            // A body of its own: a generated one names a project of nobody's
            // (`404:project_not_found`, which a stateful run reads as the
            // endpoint missing) or a host that does not resolve.
            "UpdateWebhookEndpoint": {
                "operationId": "updateWebhookEndpoint",
                "parameters": {"id": id},
                "requestBody": {"description": "changed", "rateLimitPerSecond": 10, "disabled": false},
                "description": "Change the endpoint",
            },
            "RotateWebhookEndpointSecret": {"operationId": "rotateWebhookEndpointSecret", "parameters": {"id": id}, "description": "Give the endpoint a new secret"},
            "RecoverWebhookEndpoint": {
                "operationId": "recoverWebhookEndpoint",
                "parameters": {"id": id},
                "requestBody": {"since": "2020-01-01T00:00:00Z"},
                "description": "Send again what the endpoint failed to receive",
            },
            "ListWebhookMessages": {"operationId": "listWebhookMessages", "parameters": {"endpoint": id}, "description": "The events delivered to the endpoint"},
            "DeleteWebhookEndpoint": {
                "operationId": "deleteWebhookEndpoint",
                "parameters": {"id": id},
                "description": "Delete the endpoint (its `data._id`, not the envelope's request `id`)",
            },
        }),
        "addSafeListEntry" => json!({
            "RemoveSafeListEntry": {
                "operationId": "removeSafeListEntry",
                "parameters": {"id": id},
                "description": "Remove the entry (its `data._id`, not the envelope's request `id`)",
            },
        }),
        _ => return None,
    };
    Some(links)
}
