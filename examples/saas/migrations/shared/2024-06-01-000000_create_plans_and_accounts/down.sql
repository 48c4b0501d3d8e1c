DROP TABLE accounts; DROP TABLE plans;
