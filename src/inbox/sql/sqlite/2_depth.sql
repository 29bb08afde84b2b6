-- Version 2: the depth counter the accept reads, kept by triggers. `{p}` is the table prefix.
CREATE TABLE {p}depth (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
    n  INTEGER NOT NULL
);
INSERT INTO {p}depth (id, n)
    SELECT 0, count(*) FROM {p}deliveries WHERE state IN ('pending', 'running');
CREATE TRIGGER {p}depth_insert AFTER INSERT ON {p}deliveries
    WHEN NEW.state IN ('pending', 'running')
BEGIN
    UPDATE {p}depth SET n = n + 1 WHERE id = 0;
END;
CREATE TRIGGER {p}depth_update AFTER UPDATE OF state ON {p}deliveries
    WHEN (OLD.state IN ('pending', 'running')) <> (NEW.state IN ('pending', 'running'))
BEGIN
    UPDATE {p}depth SET n = n + (CASE WHEN NEW.state IN ('pending', 'running') THEN 1 ELSE -1 END)
        WHERE id = 0;
END;
CREATE TRIGGER {p}depth_delete AFTER DELETE ON {p}deliveries
    WHEN OLD.state IN ('pending', 'running')
BEGIN
    UPDATE {p}depth SET n = n - 1 WHERE id = 0;
END;
