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

/// What an event is about, as stored now, and whose it is.
pub(crate) struct Subject {
    pub(crate) object: WebhookObject,
    /// The validation's (or block's) id.
    pub(crate) subject: ObjectId,
    pub(crate) client: ObjectId,
    pub(crate) flow: ObjectId,
    /// The validation's project, or the block's flow's (when it still exists).
    pub(crate) project: Option<String>,
    /// The validation's own `webhookUrl` (a block has none: its flow's).
    pub(crate) own_url: Option<String>,
}

/// What a delivery to the `webhookUrl` works from: the subject and its
/// client's keys.
pub(crate) struct Loaded {
    pub(crate) object: WebhookObject,
    pub(crate) subject: ObjectId,
    pub(crate) client: ObjectId,
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
        let subject = self.subject(message).await?;
        self.target(subject).await
    }

    /// The event's object by its id, as stored now. `Err` settles the message.
    pub(crate) async fn subject(&self, message: &Message) -> Result<Subject, Handled> {
        let started = Instant::now();
        let subject = match message.kind {
            EventKind::Validation(kind) => {
                let validation = self.load_validation(message, Some(kind)).await?;
                Self::of_validation(validation)
            }
            EventKind::Lifecycle(_) => {
                let validation = self.load_validation(message, None).await?;
                Self::of_validation(validation)
            }
            EventKind::FraudGuardBlocked => match self.store.block(&message.subject_id).await {
                Ok(Some(block)) => Subject {
                    object: WebhookObject::Block(block.block),
                    subject: message.subject_id.clone(),
                    client: block.client_id,
                    flow: block.project_flow_id,
                    project: block.project_id,
                    own_url: None,
                },
                Ok(None) => {
                    tracing::error!("the event's fraud-guard block does not exist; dead-lettering it");
                    return Err(Handled::Reject);
                }
                Err(error) => return Err(back_off("loading the block", &error).await),
            },
        };
        stage("load", started);
        Ok(subject)
    }

    fn of_validation(validation: PhoneValidation) -> Subject {
        Subject {
            subject: validation.id.clone(),
            client: validation.client.clone(),
            flow: validation.project_flow.clone(),
            project: Some(validation.project.to_string()),
            own_url: validation.webhook_url.clone(),
            object: WebhookObject::Validation(Box::new(validation)),
        }
    }

    /// The client's signing keys and its flow's URL. `Err` settles the message.
    pub(crate) async fn target(&self, subject: Subject) -> Result<Loaded, Handled> {
        let client = &subject.client;
        let target = match self.store.target(client, &subject.flow).await {
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
        Ok(Loaded {
            object: subject.object,
            subject: subject.subject,
            client: subject.client,
            own_url: subject.own_url,
            target,
        })
    }

    /// The validation by the event's id; for a final event, it must be in
    /// the status the event says. `Err` settles the message.
    async fn load_validation(
        &self,
        message: &Message,
        kind: Option<ValidationEventType>,
    ) -> Result<PhoneValidation, Handled> {
        let validation = match self.store.validation(&message.subject_id).await {
            Ok(Some(validation)) => validation,
            Ok(None) => {
                tracing::error!("the event's validation does not exist; dead-lettering it");
                return Err(Handled::Reject);
            }
            Err(error) => return Err(back_off("loading the validation", &error).await),
        };
        if let Some(kind) = kind {
            if !matches_status(kind, validation.status) {
                let status = validation.status.as_str();
                tracing::error!(
                    kind = kind.as_str(),
                    status,
                    "the event does not match its validation; dead-lettering it"
                );
                return Err(Handled::Reject);
            }
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
