//! Recording what a provider reported (`shared::store::receipts`): applied
//! at once when its send is recorded, kept until it is otherwise; a
//! failover it queued, and its `phone_validation_delivered` or `_undelivered`
//! event (when the client has a webhook endpoint for it), are published
//! right after the commit.

use crate::error::ApiResult;
use crate::state::AppState;
use shared::domain::delivery::Report;
use shared::store::receipts::{self, Recorded};

/// Records `report`. Reports about an earlier message of the validation,
/// about another provider's message, and reports that do not move its
/// status forward change nothing. A NUL character (which PostgreSQL cannot
/// store) is in no message id we sent, nor in any error code a provider uses.
pub async fn record(app: &AppState, report: &Report) -> ApiResult<()> {
    if report.message_id.contains('\0') || report.error_code.as_ref().is_some_and(|c| c.contains('\0')) {
        return Ok(());
    }
    let provider = report.provider.as_str();
    metrics::counter!(
        "provider_delivery_reports_total",
        "provider" => provider,
        "status" => report.status.as_str()
    )
    .increment(1);
    match receipts::record(&app.pool, report).await? {
        Recorded::Applied(applied) => {
            tracing::info!(validation_id = %applied.validation_id, provider, status = %report.status, "delivery status recorded");
            app.relay.publish_soon(applied.messages());
        }
        Recorded::Kept => {
            tracing::info!(provider, status = %report.status, "a receipt for a send not recorded yet: kept");
        }
        Recorded::Unchanged => {}
    }
    Ok(())
}
