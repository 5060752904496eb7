//! Reading phone validations as the API's client sees them: one by id, a
//! filtered page, and the newest of a phone that a code is checked against.
//! What moves a validation's status is `shared::store::phone_validations`;
//! what creates one is `crate::create`.

use super::list::{self, Filter, Listed};
use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::Paging;
use shared::db::Statements;
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{Gateway, PhoneNumber, ValidationStatus, ValidationType};
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::LazyLock;

const LISTED: Listed = Listed {
    table: "phone_validations",
    columns: COLUMNS,
    filters: &[
        "client_id",
        "project_id",
        "project_flow_id",
        "status",
        "type",
        "country_code",
        "phone",
    ],
};

/// What a list of validations may be narrowed to.
pub struct Filters {
    pub project: Option<ObjectId>,
    pub flow: Option<ObjectId>,
    pub status: Option<ValidationStatus>,
    pub kind: Option<ValidationType>,
    /// A calling code, `+` included.
    pub country_code: Option<String>,
    /// National digits.
    pub phone: Option<String>,
}

static NEWEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM phone_validations
          WHERE client_id = $1 AND country_code = $2 AND phone = $3
            AND ($4::text IS NULL OR project_id = $4)
            AND ($5::text IS NULL OR project_flow_id = $5)
            AND ($6::text IS NULL OR phone_gateway = $6)
          ORDER BY created_at DESC LIMIT 1"
    )
});

/// The client's newest validation of `phone` (of that project, flow and
/// gateway when given): the one a code is checked against.
pub async fn newest(
    pool: &PgPool,
    client: &ObjectId,
    phone: &PhoneNumber,
    project: &Option<ObjectId>,
    flow: &Option<ObjectId>,
    gateway: Option<Gateway>,
) -> Result<Option<PhoneValidation>, sqlx::Error> {
    sqlx::query_as(&NEWEST)
        .bind(client)
        .bind(phone.country().to_string())
        .bind(phone.national())
        .bind(project)
        .bind(flow)
        .bind(gateway)
        .fetch_optional(pool)
        .await
}

pub async fn one(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<PhoneValidation>> {
    list::one(pool, &LISTED, id, client).await
}

pub async fn page(
    pool: &PgPool,
    client: &ObjectId,
    filters: Filters,
    paging: Paging,
) -> ApiResult<Page<PhoneValidation>> {
    let filter = Filter::client(client)?
        .eq("project_id", filters.project)?
        .eq("project_flow_id", filters.flow)?
        .eq("status", filters.status)?
        .eq("type", filters.kind)?
        .eq("country_code", filters.country_code)?
        .eq("phone", filters.phone)?;
    list::page(pool, &LISTED, filter, paging).await
}

pub fn statements() -> Statements {
    let mut statements = list::statements("validations", &LISTED);
    statements.push(("validations.newest".into(), NEWEST.clone()));
    statements
}
