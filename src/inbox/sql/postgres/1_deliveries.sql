-- Version 1: the deliveries table and its indexes. `{p}` is the table prefix.
CREATE TABLE {p}deliveries (
    key         bytea       NOT NULL PRIMARY KEY CHECK (octet_length(key) = 32),
    state       text        NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts    bigint      NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL,
    owner       text,
    last_error  text,
    accepted_at timestamptz NOT NULL,
    finished_at timestamptz,
    path        text        NOT NULL,
    headers     text        NOT NULL,
    body        bytea       NOT NULL,
    scheme      text        NOT NULL,
    event_id    text        NOT NULL,
    event       text,
    action      text,
    delivery    text,
    scope       text,
    tenant      text,
    signed_at   text,
    version     text
);
CREATE INDEX {p}deliveries_due ON {p}deliveries (due_at) WHERE state IN ('pending', 'running');
CREATE INDEX {p}deliveries_state ON {p}deliveries (state, accepted_at);
CREATE INDEX {p}deliveries_finished ON {p}deliveries (finished_at) WHERE state = 'done';
