//! diesel's connection traits for [`TenantConnection`] and
//! [`SharedConnection`], as diesel implements them for its own pooled
//! connections: every call goes to the `PgConnection` inside, so the
//! session guard sees every statement and transaction either way.

use diesel::connection::{
    AnsiTransactionManager, CacheSize, Connection, ConnectionSealed, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager, TransactionManagerStatus,
};
use diesel::migration::MigrationConnection;
use diesel::pg::Pg;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::query_dsl::UpdateAndFetchResults;
use diesel::result::{ConnectionError, ConnectionResult, QueryResult};
use diesel::PgConnection;

use super::connection::{SharedConnection, TenantConnection};

/// The transaction manager of a scoped connection: diesel's own, on the
/// `PgConnection` inside (so nested transactions are savepoints of the
/// pool's transaction, as they are on the `PgConnection`).
#[doc(hidden)]
#[derive(Debug)]
pub struct ScopedTransactionManager;

macro_rules! scoped_connection {
    ($($scoped:ty),*) => {$(
        impl SimpleConnection for $scoped {
            fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
                (**self).batch_execute(query)
            }
        }

        impl ConnectionSealed for $scoped {}

        impl Connection for $scoped {
            type Backend = Pg;
            type TransactionManager = ScopedTransactionManager;

            /// Scoped connections come from a [`TenantPool`](crate::TenantPool), never from a URL.
            fn establish(_: &str) -> ConnectionResult<Self> {
                Err(ConnectionError::BadConnection(String::from(
                    "a scoped connection comes from a TenantPool checkout, not from a database URL",
                )))
            }

            fn begin_test_transaction(&mut self) -> QueryResult<()> {
                (**self).begin_test_transaction()
            }

            fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
            where
                T: QueryFragment<Pg> + QueryId,
            {
                (**self).execute_returning_count(source)
            }

            fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
                (**self).transaction_state()
            }

            fn instrumentation(&mut self) -> &mut dyn Instrumentation {
                (**self).instrumentation()
            }

            fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
                (**self).set_instrumentation(instrumentation)
            }

            fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
                (**self).set_prepared_statement_cache_size(size)
            }
        }

        impl TransactionManager<$scoped> for ScopedTransactionManager {
            type TransactionStateData = AnsiTransactionManager;

            fn begin_transaction(conn: &mut $scoped) -> QueryResult<()> {
                AnsiTransactionManager::begin_transaction(&mut **conn)
            }

            fn rollback_transaction(conn: &mut $scoped) -> QueryResult<()> {
                AnsiTransactionManager::rollback_transaction(&mut **conn)
            }

            fn commit_transaction(conn: &mut $scoped) -> QueryResult<()> {
                AnsiTransactionManager::commit_transaction(&mut **conn)
            }

            fn transaction_manager_status_mut(conn: &mut $scoped) -> &mut TransactionManagerStatus {
                AnsiTransactionManager::transaction_manager_status_mut(&mut **conn)
            }
        }

        impl<B> LoadConnection<B> for $scoped
        where
            PgConnection: LoadConnection<B, Backend = Pg>,
        {
            type Cursor<'conn, 'query> = <PgConnection as LoadConnection<B>>::Cursor<'conn, 'query>;
            type Row<'conn, 'query> = <PgConnection as LoadConnection<B>>::Row<'conn, 'query>;

            fn load<'conn, 'query, T>(&'conn mut self, source: T) -> QueryResult<Self::Cursor<'conn, 'query>>
            where
                T: Query + QueryFragment<Pg> + QueryId + 'query,
                Pg: diesel::expression::QueryMetadata<T::SqlType>,
            {
                (**self).load(source)
            }
        }

        impl MigrationConnection for $scoped {
            fn setup(&mut self) -> QueryResult<usize> {
                (**self).setup()
            }
        }

        impl<Changes, Output> UpdateAndFetchResults<Changes, Output> for $scoped
        where
            PgConnection: UpdateAndFetchResults<Changes, Output>,
        {
            fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
                (**self).update_and_fetch(changeset)
            }
        }
    )*};
}

scoped_connection!(TenantConnection, SharedConnection);
