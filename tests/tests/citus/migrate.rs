//! Migrations on Citus: one statement per message, so index, constraint
//! and column changes run on distributed tables; foreign keys to shared
//! tables need reference tables, and say so.
