-- Release 2: tasks get a priority. Applied to every tenant by migrate_all.
ALTER TABLE tasks ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
