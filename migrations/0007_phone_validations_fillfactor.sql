-- The dispatcher updates every validation twice (claim + hash, then `sent`)
-- and the API once more when it is validated or fails. None of those updates
-- touches an indexed column, so with free room on the page PostgreSQL can make
-- them HOT updates (no new index entries). Leave that room.
ALTER TABLE phone_validations SET (fillfactor = 75);
