-- Shared by every tenant: lives in the shared schema (`public`).
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    max_projects INTEGER NOT NULL,
    monthly_cents INTEGER NOT NULL
);

INSERT INTO plans (id, name, max_projects, monthly_cents) VALUES
    ('free', 'Free', 2, 0),
    ('team', 'Team', 50, 4900);

-- One row per tenant: who they are and what they pay.
CREATE TABLE accounts (
    schema_name TEXT PRIMARY KEY,
    company TEXT NOT NULL,
    plan_id TEXT NOT NULL REFERENCES plans (id)
);
