-- Statements Citus runs only one per message, in one file; semicolons
-- in comments, strings and quoted names are not statement ends.
CREATE INDEX orders_tenant ON orders (tenant);
CREATE UNIQUE INDEX "orders;note" ON orders (note) WHERE note IS NOT NULL;
ALTER TABLE orders ADD CONSTRAINT amount_positive CHECK (amount > 0);
ALTER TABLE orders RENAME COLUMN note TO memo;
ALTER TABLE orders ALTER COLUMN amount TYPE BIGINT;
ALTER TABLE orders ALTER COLUMN amount SET DEFAULT 1;
/* a block comment; /* nested; */ still a comment */
ALTER TABLE events ALTER COLUMN kind SET NOT NULL;
ALTER TABLE events ADD COLUMN obsolete TEXT;
ALTER TABLE events DROP COLUMN obsolete;
COMMENT ON TABLE orders IS 'one row per order; amounts in cents';
COMMENT ON TABLE events IS E'what happened to an order\; in order';
COMMENT ON COLUMN orders.memo IS $memo$free text; may be empty$memo$;
