//! The OpenAPI 3.1 document, generated from the handlers and their types.

use crate::routes::{fraud_guard, phone_validations, project_flows, projects, webhook_deliveries};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "OTP phone verification API", description = "Phone validations modelled on Verifik's API: create, send, validate."),
    paths(
        projects::create, projects::list, projects::read,
        project_flows::create, project_flows::list, project_flows::read, project_flows::update,
        phone_validations::create::create, phone_validations::validate::validate,
        phone_validations::read::read, phone_validations::read::list,
        phone_validations::stats::stats,
        webhook_deliveries::list,
        fraud_guard::list_blocks, fraud_guard::lift_block,
        fraud_guard::add, fraud_guard::list, fraud_guard::remove,
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
