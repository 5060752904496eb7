-- One validation, one code (docs/contract.md §7): a send that is taken over repeats
-- the same code, so the dispatcher instance that holds a send is named, and
-- only the holder may record its outcome or give it back. A killed holder's
-- lease runs out and another instance takes the send over.
ALTER TABLE phone_validations ADD COLUMN dispatch_lease_holder text;
