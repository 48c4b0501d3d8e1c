-- Fails on its second statement; the first must be undone with it.
CREATE TABLE tags_draft (id BIGINT);
INSERT INTO no_such_table VALUES (1);
