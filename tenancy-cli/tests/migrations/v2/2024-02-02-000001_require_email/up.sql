-- Two statements: if the second fails, the first must be undone too.
CREATE TABLE email_audit (account_id BIGINT NOT NULL, seen_at TIMESTAMPTZ NOT NULL DEFAULT now());
ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;
