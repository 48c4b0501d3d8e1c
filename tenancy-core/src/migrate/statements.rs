//! Migrations sent one statement per message, for Citus: it refuses most
//! DDL on distributed tables (`CREATE INDEX`, `ALTER TABLE .. ADD
//! CONSTRAINT`, `ALTER COLUMN`, ...) when it arrives with other statements
//! in one message ("cannot insert multiple commands into a prepared
//! statement").
//!
//! diesel's migrations hand their SQL to `batch_execute` and show it no
//! other way, so the migration first runs against a [`Recorder`], a
//! connection that only keeps the SQL it is given; that SQL is then split
//! where PostgreSQL would end each statement (the session guard's lexer)
//! and sent a statement at a time. A migration that does anything but
//! `batch_execute` (one written in Rust) runs as it is.

use std::error::Error as StdError;

use diesel::connection::{
    AnsiTransactionManager, CacheSize, Connection, ConnectionSealed, Instrumentation, SimpleConnection,
};
use diesel::migration::Migration;
use diesel::pg::Pg;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::result::{ConnectionError, ConnectionResult, Error as DieselError, QueryResult};
use diesel::PgConnection;

use crate::guard::statements;

/// A connection that keeps the SQL given to `batch_execute` and runs
/// nothing; anything else it is asked is refused, and remembered.
pub(crate) struct Recorder {
    batches: Vec<String>,
    other: bool,
    transaction_state: AnsiTransactionManager,
    instrumentation: Option<Box<dyn Instrumentation>>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            batches: Vec::new(),
            other: false,
            transaction_state: AnsiTransactionManager::default(),
            instrumentation: None,
        }
    }

    fn refuse<T>(&mut self) -> QueryResult<T> {
        self.other = true;
        Err(DieselError::QueryBuilderError(
            "recording a migration's SQL: only batch_execute is recorded".into(),
        ))
    }
}

impl SimpleConnection for Recorder {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.batches.push(query.to_owned());
        Ok(())
    }
}

impl ConnectionSealed for Recorder {}

impl Connection for Recorder {
    type Backend = Pg;
    type TransactionManager = AnsiTransactionManager;

    fn establish(_: &str) -> ConnectionResult<Self> {
        Err(ConnectionError::BadConnection(String::from("a recorder connects to nothing")))
    }

    fn execute_returning_count<T>(&mut self, _: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Pg> + QueryId,
    {
        self.refuse()
    }

    fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
        self.other = true;
        &mut self.transaction_state
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        &mut self.instrumentation
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.instrumentation = Some(Box::new(instrumentation));
    }

    fn set_prepared_statement_cache_size(&mut self, _: CacheSize) {}
}

/// Runs `migration` on `conn` with each statement of its SQL in a message
/// of its own; a migration that is not plain SQL runs as it is.
pub(crate) fn run_one_statement_per_message(
    migration: &dyn Migration<Pg>,
    conn: &mut PgConnection,
) -> Result<(), Box<dyn StdError + Send + Sync>> {
    let mut recorder = Recorder::new();
    let recorded = migration.run(&mut recorder);
    if recorder.other {
        return migration.run(conn);
    }
    recorded?;
    for batch in &recorder.batches {
        for statement in statements(batch) {
            conn.batch_execute(statement)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::migration::{MigrationMetadata, MigrationName};
    use std::fmt;

    struct Sql(&'static str);
    struct Name;
    impl fmt::Display for Name {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("2024-01-01-000000_x")
        }
    }
    impl MigrationName for Name {
        fn version(&self) -> diesel::migration::MigrationVersion<'_> {
            diesel::migration::MigrationVersion::from("2024-01-01-000000")
        }
    }
    struct Meta;
    impl MigrationMetadata for Meta {}
    impl Migration<Pg> for Sql {
        fn run(
            &self,
            conn: &mut dyn diesel::connection::BoxableConnection<Pg>,
        ) -> diesel::migration::Result<()> {
            Ok(conn.batch_execute(self.0)?)
        }
        fn revert(
            &self,
            _: &mut dyn diesel::connection::BoxableConnection<Pg>,
        ) -> diesel::migration::Result<()> {
            Ok(())
        }
        fn metadata(&self) -> &dyn MigrationMetadata {
            &Meta
        }
        fn name(&self) -> &dyn MigrationName {
            &Name
        }
    }

    #[test]
    fn a_recorder_keeps_what_a_sql_migration_sends() {
        let mut recorder = Recorder::new();
        let migration = Sql("CREATE TABLE a (x int); CREATE INDEX ON a (x)");
        assert!(migration.run(&mut recorder).is_ok());
        assert!(!recorder.other);
        assert_eq!(recorder.batches, ["CREATE TABLE a (x int); CREATE INDEX ON a (x)"]);
    }

    #[test]
    fn a_recorder_notices_anything_but_batch_execute() {
        let mut recorder = Recorder::new();
        let result = diesel::sql_query("SELECT 1").execute(&mut recorder);
        assert!(result.is_err());
        assert!(recorder.other);
    }

    use diesel::RunQueryDsl;
}
