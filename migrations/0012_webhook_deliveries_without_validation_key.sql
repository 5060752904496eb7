-- The webhook worker reads a delivery's validation by id before it claims
-- the attempt, so the foreign key from webhook_deliveries to
-- phone_validations checked nothing the worker had not just read, and cost,
-- per claimed attempt, a lookup and a share lock written into the
-- validation's row (WAL included). Under a burst of deliveries that was a
-- large share of the database's work. Deliveries are never deleted, and
-- validations are never deleted either, so no row can dangle.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_validation_id_fkey;
