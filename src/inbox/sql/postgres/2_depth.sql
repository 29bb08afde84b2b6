-- Version 2: the depth counter the accept reads, kept by triggers. `{p}` is the table prefix.
CREATE TABLE {p}depth (
    shard integer NOT NULL PRIMARY KEY,
    n     bigint  NOT NULL
);
INSERT INTO {p}depth (shard, n) SELECT shard, 0 FROM generate_series(0, 63) AS shard;
CREATE FUNCTION {p}depth_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := CASE WHEN TG_OP = 'DELETE' THEN -1
        WHEN NEW.state IN ('pending', 'running') THEN 1 ELSE -1 END;
    home integer := pg_backend_pid() % 64;
    chosen integer;
BEGIN
    -- A shard no other transaction is changing (or one this transaction holds already).
    FOR step IN 0..63 LOOP
        chosen := (home + step) % 64;
        IF pg_try_advisory_xact_lock(hashtext('tower-webhook depth {p}'), chosen) THEN
            UPDATE {s}.{p}depth SET n = n + delta WHERE shard = chosen;
            RETURN NULL;
        END IF;
    END LOOP;
    -- All 64 taken: wait for one.
    UPDATE {s}.{p}depth SET n = n + delta WHERE shard = home;
    RETURN NULL;
END
$$;
CREATE FUNCTION {p}depth_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {s}.{p}depth SET n = 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER {p}depth_insert AFTER INSERT ON {p}deliveries FOR EACH ROW
    WHEN (NEW.state IN ('pending', 'running'))
    EXECUTE FUNCTION {p}depth_change();
CREATE TRIGGER {p}depth_update AFTER UPDATE OF state ON {p}deliveries FOR EACH ROW
    WHEN ((OLD.state IN ('pending', 'running')) <> (NEW.state IN ('pending', 'running')))
    EXECUTE FUNCTION {p}depth_change();
CREATE TRIGGER {p}depth_delete AFTER DELETE ON {p}deliveries FOR EACH ROW
    WHEN (OLD.state IN ('pending', 'running'))
    EXECUTE FUNCTION {p}depth_change();
CREATE TRIGGER {p}depth_truncate AFTER TRUNCATE ON {p}deliveries FOR EACH STATEMENT
    EXECUTE FUNCTION {p}depth_reset();
UPDATE {p}depth
    SET n = (SELECT count(*) FROM {p}deliveries WHERE state IN ('pending', 'running'))
    WHERE shard = 0;
