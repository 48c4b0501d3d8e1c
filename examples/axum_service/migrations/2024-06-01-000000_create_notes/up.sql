-- Runs inside each tenant's schema: no schema name appears here.
CREATE TABLE notes (
    id BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL
);
