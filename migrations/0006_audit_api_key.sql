-- The API key that acted, when a request was authenticated by one: a
-- provisioning key that manages keys is named in the rows it causes.
ALTER TABLE audit_events ADD COLUMN api_key_id TEXT;
