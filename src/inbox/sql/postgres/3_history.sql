-- Version 3: each delivery's history (the last entries). `{p}` is the table prefix.
ALTER TABLE {p}deliveries ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
