-- API keys: only an HMAC-SHA256 digest of each key is stored (with a server
-- pepper kept next to the database), plus a display prefix and last four.
CREATE TABLE api_keys (
    id             TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id),
    name           TEXT    NOT NULL,
    prefix         TEXT    NOT NULL,        -- "sk_live_" + first 8 random characters
    last4          TEXT    NOT NULL,
    digest         BLOB    NOT NULL UNIQUE, -- HMAC-SHA256(pepper, full key)
    scopes         TEXT    NOT NULL,        -- space-separated
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,                 -- NULL: never; set by --expires or a rotation's grace
    revoked_at     INTEGER,
    rotated_from   TEXT    REFERENCES api_keys (id),
    last_used_at   INTEGER,
    request_count  INTEGER NOT NULL DEFAULT 0,
    rev            INTEGER NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_rev ON api_keys (rev);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

-- Requests per key per UTC day, written in batches by the daemon.
CREATE TABLE api_key_usage (
    key_id    TEXT    NOT NULL REFERENCES api_keys (id),
    day       TEXT    NOT NULL,  -- YYYY-MM-DD (UTC)
    requests  INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
);
