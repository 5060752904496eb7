//! What an endpoint receives, as JSON Schema (docs/contract.md §13): each
//! event type's body, for the catalogue (`GET /v2/webhook-event-types`,
//! self-contained with `$defs`) and for the OpenAPI document's `webhooks`
//! (referring to its components). Built from the same `PhoneValidation`
//! type the API answers with, so the three cannot drift apart.

use serde_json::{json, Map, Value};
use shared::domain::{PhoneValidation, WebhookEventType};
use std::sync::OnceLock;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::OpenApi;

/// An event type's name, for the OpenAPI document (the same list as
/// `WebhookEventType::ALL`, checked by a test).
#[derive(utoipa::ToSchema)]
#[allow(non_camel_case_types, dead_code)]
pub enum EventTypeName {
    phone_validation_sent,
    phone_validation_delivered,
    phone_validation_undelivered,
    phone_validation_validated,
    phone_validation_failed,
    fraud_guard_blocked,
}

fn names() -> Vec<&'static str> {
    WebhookEventType::ALL.iter().map(|kind| kind.as_str()).collect()
}

/// One event type's name (OpenAPI `schema_with`).
pub fn name_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(names()))
            .build(),
    )
}

/// A list of event types, at least one (OpenAPI `schema_with`).
pub fn names_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(RefOr::T(name_schema()))
            .min_items(Some(1))
            .build(),
    )
}

/// A list of event types, or `null`: every type (OpenAPI `schema_with`).
pub fn nullable_names_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
            .items(RefOr::T(name_schema()))
            .min_items(Some(1))
            .build(),
    )
}

/// The body POSTed for `kind`; `object` of a validation event refers to
/// `{prefix}PhoneValidation`.
pub fn body_schema(kind: WebhookEventType, prefix: &str) -> Value {
    let object = if kind.is_validation() {
        json!({"$ref": format!("{prefix}PhoneValidation")})
    } else {
        json!({
            "type": "object",
            "description": "The block: the prefix (or calling code), when it ends, and the judged sends and how many were validated",
            "required": ["prefix", "until", "sent", "validated"],
            "properties": {
                "prefix": {"type": "string", "pattern": r"^\+[0-9]{1,15}$", "example": "+507626"},
                "until": {"type": "string", "format": "date-time"},
                "sent": {"type": "integer", "minimum": 0},
                "validated": {"type": "integer", "minimum": 0},
            },
        })
    };
    json!({
        "title": kind.as_str(),
        "description": kind.description(),
        "type": "object",
        "required": ["type", "object", "eventId", "occurredAt"],
        "properties": {
            "type": {"type": "string", "const": kind.as_str()},
            "object": object,
            "eventId": {
                "type": "string",
                "description": "The event's id, also the `webhook-id` header: the same on every retry, resend and recovery, and at every endpoint",
            },
            "occurredAt": {"type": "string", "format": "date-time"},
        },
    })
}

#[derive(OpenApi)]
#[openapi(components(schemas(PhoneValidation)))]
struct Objects;

/// `PhoneValidation` and every schema it refers to, as `$defs`.
fn definitions() -> &'static Value {
    static DEFS: OnceLock<Value> = OnceLock::new();
    DEFS.get_or_init(|| {
        let components = Objects::openapi().components.map(|c| c.schemas).unwrap_or_default();
        let mut defs = serde_json::to_value(components).unwrap_or_else(|_| json!({}));
        rewrite_refs(&mut defs);
        defs
    })
}

/// `#/components/schemas/X` → `#/$defs/X`, everywhere in `value`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(name) = item.as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
                        *item = Value::String(format!("#/$defs/{name}"));
                    }
                } else {
                    rewrite_refs(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The catalogue: every type's name, description and body schema
/// (JSON Schema 2020-12, self-contained).
pub fn catalogue() -> &'static Value {
    static CATALOGUE: OnceLock<Value> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let types: Vec<Value> = WebhookEventType::ALL
            .iter()
            .map(|kind| {
                let mut schema = body_schema(*kind, "#/$defs/");
                if let Value::Object(map) = &mut schema {
                    let mut full = Map::new();
                    full.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
                    full.append(map);
                    if kind.is_validation() {
                        full.insert("$defs".into(), definitions().clone());
                    }
                    schema = Value::Object(full);
                }
                json!({"name": kind.as_str(), "description": kind.description(), "schema": schema})
            })
            .collect();
        Value::Array(types)
    })
}

/// The OpenAPI document's `webhooks`: one POST per event type, its body
/// referring to the document's components.
pub fn openapi_webhooks() -> Value {
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}});
    let mut webhooks = Map::new();
    for kind in WebhookEventType::ALL {
        webhooks.insert(
            kind.as_str().to_owned(),
            json!({"post": {
                "operationId": format!("webhook_{}", kind.as_str()),
                "summary": kind.as_str(),
                "description": kind.description(),
                "tags": ["webhook events"],
                "parameters": [
                    header("webhook-id", "The event's id (`eventId`): drop duplicates by it"),
                    header("webhook-timestamp", "Unix seconds of this attempt"),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256>`, space-separated when a rotation's previous secret signs too (Standard Webhooks)"),
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": body_schema(kind, "#/components/schemas/")}},
                },
                "responses": {
                    "2XX": {"description": "Delivered"},
                    "410": {"description": "Gone: the endpoint stops receiving this event"},
                    "default": {"description": "Retried on the endpoint's schedule"},
                },
            }}),
        );
    }
    Value::Object(webhooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_names_are_the_catalogues() {
        use utoipa::PartialSchema;
        let documented = serde_json::to_value(EventTypeName::schema()).unwrap();
        assert_eq!(documented["enum"], serde_json::json!(names()));
    }

    #[test]
    fn the_catalogue_is_self_contained() {
        let catalogue = catalogue().as_array().unwrap();
        assert_eq!(catalogue.len(), WebhookEventType::ALL.len());
        let text = serde_json::to_string(catalogue).unwrap();
        assert!(!text.contains("#/components/"), "no reference outside the schema");
        let validated = &catalogue[3]["schema"];
        assert_eq!(validated["properties"]["type"]["const"], "phone_validation_validated");
        assert!(validated["$defs"]["PhoneValidation"]["properties"]["status"].is_object());
        assert!(catalogue[5]["schema"]["properties"]["object"]["properties"]["prefix"].is_object());
    }
}
