//! A workflow's later steps against the flow's send limits
//! (docs/contract.md §9, §14), in PostgreSQL like the API's: the fraud
//! guard judges the number now and refuses it while a block lasts, and
//! the step takes a unit of the flow's `perDay`. Only later steps ask: the
//! first send was judged and counted at create.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use shared::domain::phone_validation::PhoneValidation;
use shared::store::fraud::{self, judge, GuardConfig};
use shared::store::rate_limits::{self as windows, Limit};
use shared::ObjectId;

/// A unit of the flow's `perDay` a step took: the start of its window.
#[must_use]
pub struct DayUnit {
    window: DateTime<Utc>,
}

impl Store {
    /// Judges the validation's number as the guard's upkeep would (a block
    /// this makes is recorded, and its `fraud_guard_blocked` event queued,
    /// once, whoever judges it first), then answers the end of the block
    /// that refuses the number, if any.
    pub async fn guard_step(
        &self,
        validation: &PhoneValidation,
        config: &GuardConfig,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (client, code, phone) = (&validation.client, &validation.country_code, &validation.phone);
        let mut tx = self.pool.begin().await?;
        let blocks = judge::judge_number(&mut tx, config, (client, &validation.project_flow), (code, phone)).await?;
        let until = fraud::blocking(&mut tx, client, code, phone).await?;
        tx.commit().await?;
        blocks.iter().for_each(judge::NewBlock::announce);
        self.relay.publish_soon(blocks.into_iter().map(|block| block.event));
        Ok(until)
    }

    /// Takes a unit of the flow's `perDay` (`per_day` units a UTC day);
    /// `None` when today's are used up.
    pub async fn take_day(&self, flow: &ObjectId, per_day: u32) -> Result<Option<DayUnit>, StoreError> {
        let taken = windows::take(&self.pool, flow, &[Limit::per_day(per_day)]).await?;
        Ok(taken.into_iter().next().map(|(_, window)| DayUnit { window }))
    }

    /// Gives the unit back: the step was not sent after all (it will be
    /// tried again, and take one again).
    pub async fn give_back_day(&self, flow: &ObjectId, unit: DayUnit) -> Result<(), StoreError> {
        windows::give_back(&self.pool, flow, &[windows::DAY.to_owned()], &[unit.window]).await?;
        Ok(())
    }
}
