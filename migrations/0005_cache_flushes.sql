-- Operator cache flushes (`mlapi cache flush`). Every daemon polls for rows
-- newer than the last it applied and drops its in-process entries: the
-- table is how a flush reaches daemons without Redis, within a second.
CREATE TABLE cache_flushes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    model       TEXT,                -- NULL: every model
    flushed_at  INTEGER NOT NULL     -- unix seconds
);
