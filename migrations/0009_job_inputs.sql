-- A job's input rows apart from its status row. Every chunk's commit
-- updates the status row, and SQLite writes a whole row again on update:
-- with the rows inline (up to `jobs.max_instances` of them, in overflow
-- pages) each commit rewrote them all. Deleted with their job.
CREATE TABLE job_inputs (
    job_id    TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    -- The feature rows, a JSON array of arrays of numbers.
    instances TEXT NOT NULL
);
INSERT INTO job_inputs (job_id, instances) SELECT id, instances FROM jobs;
ALTER TABLE jobs DROP COLUMN instances;
