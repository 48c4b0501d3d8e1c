DROP TABLE audit_log, attachments, task_labels, labels, comments, tasks, projects, memberships, teams, users;
