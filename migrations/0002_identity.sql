-- Identity: users, sessions (refresh-token families), revocations, lockout.
-- Times are unix seconds. `rev` columns take the value of state_version.version
-- at the change, so a daemon reloads only what changed since it last looked.

ALTER TABLE audit_events ADD COLUMN client_ip TEXT;

CREATE TABLE state_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 0);

CREATE TABLE users (
    id                  TEXT    PRIMARY KEY,
    username            TEXT    NOT NULL,
    username_key        TEXT    NOT NULL UNIQUE,  -- NFKC + lowercase: one account per visible name
    email               TEXT    NOT NULL UNIQUE,  -- lowercase
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'manager', 'user')),
    tier                TEXT    NOT NULL,
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    tokens_valid_after  INTEGER NOT NULL DEFAULT 0,  -- tokens issued earlier are dead
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    rev                 INTEGER NOT NULL
);
CREATE INDEX users_rev ON users (rev);

CREATE TABLE sessions (
    id              TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL REFERENCES users (id),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,  -- absolute: rotation never extends it
    revoked_at      INTEGER,
    revoked_reason  TEXT,
    rev             INTEGER NOT NULL
);
CREATE INDEX sessions_rev ON sessions (rev);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    jti         TEXT    PRIMARY KEY,
    session_id  TEXT    NOT NULL REFERENCES sessions (id),
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE revoked_tokens (
    jti         TEXT    PRIMARY KEY,
    expires_at  INTEGER NOT NULL,
    rev         INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_rev ON revoked_tokens (rev);

CREATE TABLE login_failures (
    username_key  TEXT    NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (username_key, at);
