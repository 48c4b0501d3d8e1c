CREATE TABLE plans (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
-- Holds the run open a moment, so that concurrent runs really overlap.
SELECT pg_sleep(0.2);
INSERT INTO plans (name) VALUES ('free');
