-- API version lifecycle: a row per version an operator has deprecated.
-- No row: the version is current.
CREATE TABLE api_versions (
    version        INTEGER PRIMARY KEY,
    deprecated_at  INTEGER NOT NULL,   -- unix seconds (RFC 9745 Deprecation)
    sunset_at      INTEGER NOT NULL,   -- unix seconds (RFC 8594 Sunset); 410 after it
    successor      INTEGER,
    link           TEXT,               -- the operator's deprecation notice (rel="deprecation")
    rev            INTEGER NOT NULL
);
