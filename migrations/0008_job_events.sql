-- Live job events. Every write that changes what a job's status object
-- shows sets `rev` above every other job's, so each daemon reads the changes
-- made by any process (`WHERE rev > last seen`) and tells its sockets.
ALTER TABLE jobs ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET rev = rowid;
CREATE INDEX jobs_by_rev ON jobs (rev);
-- The highest `rev` a deleted job had (purges, deleted users), so a new
-- `rev` never repeats one a daemon's feed has passed.
CREATE TABLE job_rev_floor (n INTEGER NOT NULL);
INSERT INTO job_rev_floor VALUES (0);
CREATE TRIGGER jobs_rev_floor AFTER DELETE ON jobs BEGIN
    UPDATE job_rev_floor SET n = MAX(n, OLD.rev);
END;

-- Single-use WebSocket tickets (`POST /api/v1/ws/tickets`), for browsers
-- that cannot send a credential header on the upgrade. Stored by digest;
-- a ticket carries what its socket re-checks: the API key's digest, or the
-- access token's id, session, issue and expiry times.
CREATE TABLE ws_tickets (
    digest             BLOB PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes             TEXT NOT NULL,
    key_id             TEXT,
    key_digest         BLOB,
    token_id           TEXT,
    session_id         TEXT,
    token_issued_at    INTEGER,
    token_expires_at   INTEGER,
    expires_at         INTEGER NOT NULL
) WITHOUT ROWID;
