-- Voice calls (docs/contract.md §14): `voice` joins the gateways a
-- validation may go by. NOT VALID: every existing row already passes, so
-- the table is not scanned under an exclusive lock; new rows are checked.
ALTER TABLE phone_validations DROP CONSTRAINT IF EXISTS phone_validations_phone_gateway_check;
ALTER TABLE phone_validations ADD CONSTRAINT phone_validations_phone_gateway_check
    CHECK (phone_gateway IN ('sms', 'whatsapp', 'voice', 'none')) NOT VALID;

-- Workflows (docs/contract.md §14): a flow's `channels` default to its
-- gateway alone and `channelTimeoutSeconds` to 60; flows stored before
-- either existed get them written, so reading a flow shows every field.
UPDATE project_flows
   SET phone = phone || jsonb_build_object(
           'channels', CASE WHEN phone->>'phoneGateway' = 'none' THEN '[]'::jsonb
                            ELSE jsonb_build_array(phone->>'phoneGateway') END,
           'channelTimeoutSeconds', 60)
 WHERE NOT (phone ? 'channels');
