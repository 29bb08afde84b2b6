-- Version 1: the deliveries table and its indexes. `{p}` is the table prefix.
CREATE TABLE {p}deliveries (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    owner       TEXT,
    last_error  TEXT,
    accepted_at INTEGER NOT NULL,
    finished_at INTEGER,
    path        TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    scheme      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    event       TEXT,
    action      TEXT,
    delivery    TEXT,
    scope       TEXT,
    tenant      TEXT,
    signed_at   TEXT,
    version     TEXT
);
CREATE INDEX {p}deliveries_due ON {p}deliveries (due_at) WHERE state IN ('pending', 'running');
CREATE INDEX {p}deliveries_state ON {p}deliveries (state, accepted_at);
CREATE INDEX {p}deliveries_finished ON {p}deliveries (finished_at) WHERE state = 'done';
