//! The load stage: what a delivery is about, re-read from the database by
//! the event's id (never taken from the message), and its client's keys.

use super::stage::{back_off, stage};
use crate::body::WebhookObject;
use crate::event::{EventKind, Message};
use crate::store::{LoadError, Store, Target};
use shared::amqp::Handled;
use shared::domain::{PhoneValidation, ValidationStatus};
use shared::events::ValidationEventType;
use shared::ObjectId;
use std::sync::Arc;
use std::time::Instant;

/// What a delivery works from: the event's object as stored, whose it is,
/// and its client's keys.
pub(crate) struct Loaded {
    pub(crate) object: WebhookObject,
    /// The validation's (or block's) id.
    pub(crate) subject: ObjectId,
    pub(crate) client: ObjectId,
    /// The validation's own `webhookUrl` (a block has none: its flow's).
    pub(crate) own_url: Option<String>,
    pub(crate) target: Arc<Target>,
}

/// Whether an event of `kind` can be about a validation in `status` (a
/// `validated` event for a failed validation is forged or corrupt).
pub fn matches_status(kind: ValidationEventType, status: ValidationStatus) -> bool {
    matches!(
        (kind, status),
        (ValidationEventType::Validated, ValidationStatus::Validated)
            | (ValidationEventType::Failed, ValidationStatus::Failed)
    )
}

/// The load stage: reads through the store alone.
pub(super) struct Loader<'a> {
    pub(super) store: &'a Store,
}

impl Loader<'_> {
    /// Load: the event's object by its id, as stored now, and its client's
    /// signing keys. `Err` settles the message.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn load(&self, message: &Message) -> Result<Loaded, Handled> {
        let started = Instant::now();
        let (object, subject, client, flow, own_url) = match message.kind {
            EventKind::Validation(kind) => {
                let validation = self.load_validation(message, kind).await?;
                let (id, client, flow) = (
                    validation.id.clone(),
                    validation.client.clone(),
                    validation.project_flow.clone(),
                );
                let own_url = validation.webhook_url.clone();
                (
                    WebhookObject::Validation(Box::new(validation)),
                    id,
                    client,
                    flow,
                    own_url,
                )
            }
            EventKind::FraudGuardBlocked(_) => match self.store.block(&message.subject_id).await {
                Ok(Some((client, flow, block))) => (
                    WebhookObject::Block(block),
                    message.subject_id.clone(),
                    client,
                    flow,
                    None,
                ),
                Ok(None) => {
                    tracing::error!("the event's fraud-guard block does not exist; dead-lettering it");
                    return Err(Handled::Reject);
                }
                Err(error) => return Err(back_off("loading the block", &error).await),
            },
        };
        let target = match self.store.target(&client, &flow).await {
            Ok(Some(target)) => target,
            Ok(None) => {
                tracing::error!(client_id = %client, "the event's client does not exist; dead-lettering it");
                return Err(Handled::Reject);
            }
            Err(LoadError::Secret(error)) => {
                tracing::error!(client_id = %client, %error, "dead-lettering the event");
                return Err(Handled::Reject);
            }
            // A secret sealed with a key this worker lacks (replayable once it
            // has it), or a plaintext one, refused: whoever planted it knows it.
            Err(LoadError::Sealed(error)) => {
                tracing::error!(client_id = %client, %error, "dead-lettering the event");
                return Err(Handled::Reject);
            }
            Err(LoadError::Database(error)) => return Err(back_off("loading the client", &error).await),
        };
        stage("load", started);
        Ok(Loaded {
            object,
            subject,
            client,
            own_url,
            target,
        })
    }

    /// The validation by the event's id; it must be in the status the
    /// event says. `Err` settles the message.
    async fn load_validation(&self, message: &Message, kind: ValidationEventType) -> Result<PhoneValidation, Handled> {
        let validation = match self.store.validation(&message.subject_id).await {
            Ok(Some(validation)) => validation,
            Ok(None) => {
                tracing::error!("the event's validation does not exist; dead-lettering it");
                return Err(Handled::Reject);
            }
            Err(error) => return Err(back_off("loading the validation", &error).await),
        };
        if !matches_status(kind, validation.status) {
            let status = validation.status.as_str();
            tracing::error!(
                kind = kind.as_str(),
                status,
                "the event does not match its validation; dead-lettering it"
            );
            return Err(Handled::Reject);
        }
        Ok(validation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_must_match_its_validations_status() {
        use ValidationEventType::{Failed, Validated};
        assert!(matches_status(Validated, ValidationStatus::Validated));
        assert!(matches_status(Failed, ValidationStatus::Failed));
        assert!(!matches_status(Validated, ValidationStatus::Failed));
        assert!(!matches_status(Validated, ValidationStatus::Sent));
        assert!(!matches_status(Failed, ValidationStatus::New));
    }
}
