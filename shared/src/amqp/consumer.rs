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

/// Consumes `queue` until `cancel`, calling `handler` for every delivery;
/// after a lost connection, starts again on a new channel.
pub async fn consume<F, Fut>(broker: Broker, queue: String, prefetch: u16, cancel: CancellationToken, handler: F)
where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    while !cancel.is_cancelled() {
        let Some((channel, consumer)) = start(&broker, &queue, prefetch, &cancel).await else {
            return;
        };
        tracing::info!(%queue, prefetch, "consuming");
        let mut in_flight = JoinSet::new();
        run(&channel, consumer, &queue, &cancel, &handler, &mut in_flight).await;
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, async { while in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(%queue, "in-flight handlers did not finish in time; their messages return to the queue");
            in_flight.abort_all();
        }
        let _ = channel.close(200, "bye".into()).await;
    }
}

/// A channel consuming `queue`, once the broker allows (`None`: cancelled).
async fn start(
    broker: &Broker,
    queue: &str,
    prefetch: u16,
    cancel: &CancellationToken,
) -> Option<(lapin::Channel, lapin::Consumer)> {
    loop {
        let channel = tokio::select! {
            _ = cancel.cancelled() => return None,
            channel = broker.channel() => channel,
        };
        match channel {
            Ok(channel) => {
                let consumer = async {
                    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
                    channel
                        .basic_consume(
                            queue.into(),
                            "".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                }
                .await;
                match consumer {
                    Ok(consumer) => return Some((channel, consumer)),
                    Err(error) => tracing::warn!(%queue, %error, "cannot start consuming; retrying"),
                }
            }
            Err(error) => tracing::warn!(%queue, %error, "cannot open a consumer channel; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Hands each delivery to its own task until `cancel` or the channel dies.
async fn run<F, Fut>(
    channel: &lapin::Channel,
    mut consumer: lapin::Consumer,
    queue: &str,
    cancel: &CancellationToken,
    handler: &F,
    in_flight: &mut JoinSet<()>,
) where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                return;
            }
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    record_lag(&delivery, queue);
                    in_flight.spawn(settle(delivery, handler.clone()));
                }
                Some(Err(error)) => {
                    tracing::warn!(%queue, %error, "consumer failed; reconnecting");
                    return;
                }
                None => {
                    tracing::warn!(%queue, "consumer stream ended; reconnecting");
                    return;
                }
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
}

/// `consumer_lag_seconds{queue}`: how long the message waited since it was
/// published (the AMQP timestamp, whole seconds).
fn record_lag(delivery: &Delivery, queue: &str) {
    if let Some(published) = delivery.properties.timestamp() {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let lag = now.saturating_sub(*published) as f64;
        metrics::histogram!("consumer_lag_seconds", "queue" => queue.to_owned()).record(lag);
    }
}

/// Runs the handler and acks, requeues or rejects by what it says.
async fn settle<F, Fut>(delivery: Delivery, handler: F)
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = Handled>,
{
    let acker = delivery.acker.clone();
    let result = match handler(delivery).await {
        Handled::Ack => acker.ack(BasicAckOptions::default()).await,
        Handled::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Handled::Reject => {
            acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(error) = result {
        // The channel died: the broker redelivers the message.
        tracing::warn!(%error, "could not settle a delivery");
    }
}
