DROP TABLE tags_draft;
