//! What every stage of the pipeline uses: its timing metric, and the
//! back-off that gives a message back when the database or broker failed.

use shared::amqp::Handled;
use std::time::{Duration, Instant};

/// Pause before giving a message back when the database or broker failed,
/// so an outage does not spin the queue.
const BACK_OFF: Duration = Duration::from_secs(1);

/// Records how long a stage took.
pub(crate) fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("webhook_stage_seconds", "stage" => name).record(started.elapsed().as_secs_f64());
}

pub(crate) fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

pub(crate) async fn back_off<E: std::fmt::Display + Sync>(what: &'static str, error: &E) -> Handled {
    tracing::warn!(%error, "{what} failed; the message goes back to the queue");
    tokio::time::sleep(BACK_OFF).await;
    Handled::Requeue
}
