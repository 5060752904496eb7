//! A consumer loop that survives reconnects and stops cleanly: each delivery
//! is handled on its own task (at most `prefetch` at once, as the broker sends
//! no more), acked or rejected by what the handler returns. On cancellation it
//! stops consuming, lets in-flight handlers finish, then closes its channel,
//! which returns anything unacked to the queue.

use super::{Broker, Delivery};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What to do with a delivery once handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done (or handed on durably, e.g. to a delay tier): remove it.
    Ack,
    /// Not done, through no fault of the message: give it back to the queue.
    Requeue,
    /// Cannot ever be handled: dead-letter it.
    Reject,
}

/// How long shutdown waits for in-flight handlers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Consumes `queue` until `cancel`, calling `handler` for every delivery.
pub async fn consume<F, Fut>(broker: Broker, queue: String, prefetch: u16, cancel: CancellationToken, handler: F)
where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    while !cancel.is_cancelled() {
        let channel = tokio::select! {
            _ = cancel.cancelled() => return,
            channel = broker.channel() => channel,
        };
        let channel = match channel {
            Ok(channel) => channel,
            Err(error) => {
                tracing::warn!(%queue, %error, "cannot open a consumer channel; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let started = async {
            channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
            channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let mut consumer = match started.await {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%queue, %error, "cannot start consuming; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        tracing::info!(%queue, prefetch, "consuming");
        let mut in_flight = JoinSet::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                    break;
                }
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let handler = handler.clone();
                        in_flight.spawn(async move {
                            let acker = delivery.acker.clone();
                            let outcome = handler(delivery).await;
                            let result = match outcome {
                                Handled::Ack => acker.ack(BasicAckOptions::default()).await,
                                Handled::Requeue => acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await,
                                Handled::Reject => acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await,
                            };
                            if let Err(error) = result {
                                // The channel died: the broker redelivers the message.
                                tracing::warn!(%error, "could not settle a delivery");
                            }
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%queue, %error, "consumer failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!(%queue, "consumer stream ended; reconnecting");
                        break;
                    }
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, async { while in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(%queue, "in-flight handlers did not finish in time; their messages return to the queue");
            in_flight.abort_all();
        }
        let _ = channel.close(200, "bye".into()).await;
    }
}
