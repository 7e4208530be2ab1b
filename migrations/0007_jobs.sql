-- Batch jobs: accepted rows are committed before the 202, run in chunks by
-- any daemon holding the lease, and each chunk's results are committed with
-- the job's progress in one transaction (job_results' key makes every
-- instance's result exist at most once).
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    -- NULL: an operator's job (`mlapi cache warm`), no user's.
    user_id         TEXT REFERENCES users(id) ON DELETE CASCADE,
    model           TEXT NOT NULL,
    model_version   TEXT,
    explain         INTEGER NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    total           INTEGER NOT NULL,
    done            INTEGER NOT NULL DEFAULT 0,
    -- The feature rows, a JSON array of arrays of numbers.
    instances       TEXT NOT NULL,
    idempotency_key TEXT,
    -- SHA-256 of the request body, to tell a retry from a different request.
    body_digest     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    error           TEXT,
    -- Which daemon runs it, until when (unix ms); a lapsed lease may be taken over.
    lease_owner     TEXT,
    lease_until_ms  INTEGER
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_user ON jobs (user_id, created_at);
CREATE INDEX jobs_by_status ON jobs (status, created_at);

CREATE TABLE job_results (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    -- The prediction as JSON: prediction, confidence, probabilities, explanation?
    result TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
