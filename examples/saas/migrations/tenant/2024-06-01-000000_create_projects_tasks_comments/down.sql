DROP TABLE comments; DROP TABLE tasks; DROP TABLE projects;
