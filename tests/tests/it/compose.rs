//! Scoped code composes: a scoped call made with the connection its caller
//! holds runs on that connection, inside that transaction; the same DAL
//! runs unchanged in session mode and behind a real PgBouncer in
//! transaction mode; scoped connections are diesel connections; and
//! transactions take diesel's options.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use tenancy_core::{
    tenant_scoped, PoolerMode, Scope, ScopedConnection, TenancyError, Tenant, TenantConnection,
    TenantContext, TenantPool, TransactionOptions,
};
use tenancy_devdb::pgbouncer::{PgBouncer, PgBouncerConfig};
use tenancy_tests::{admin, backend_pid, items, rows_of, scalar_i64, url, Schemas, ITEMS_DDL};

/// Rows of `items` through whatever scope is given: a context checks a
/// connection out, a held connection is used as it is.
#[tenant_scoped(ctx = scope)]
fn count(scope: impl Scope) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

/// Adds a row in a transaction of its own, or a savepoint of the caller's.
#[tenant_scoped(ctx = scope, transaction)]
fn add(scope: impl Scope, tenant: &str, body: &str) -> Result<i64, TenancyError> {
    if body.is_empty() {
        diesel::insert_into(items::table)
            .values((items::tenant.eq(tenant), items::body.eq("rolled back with its savepoint")))
            .execute(conn)?;
        return Err(TenancyError::Database(diesel::result::Error::RollbackTransaction));
    }
    Ok(diesel::insert_into(items::table)
        .values((items::tenant.eq(tenant), items::body.eq(body)))
        .returning(items::id)
        .get_result(conn)?)
}

/// A DAL as an application writes one.
#[derive(TenantContext)]
struct ItemsDal {
    tenant: Tenant,
    added: Vec<i64>,
}

impl ItemsDal {
    fn name(&self) -> String {
        self.tenant.schema().to_string()
    }

    #[tenant_scoped]
    fn bodies(&self) -> Result<Vec<String>, TenancyError> {
        Ok(items::table.select(items::body).order(items::id).load(conn)?)
    }

    #[tenant_scoped]
    fn add_plain(&self, body: &str) -> Result<(), TenancyError> {
        add(&mut *conn, &self.name(), body)?;
        Ok(())
    }

    /// Several scoped calls on this transaction's connection: they see its
    /// uncommitted rows, and a failed one is rolled back alone.
    #[tenant_scoped(transaction)]
    fn add_batch(&mut self, bodies: &[&str]) -> Result<i64, TenancyError> {
        let name = self.name();
        for body in bodies {
            match add(&mut *conn, &name, body) {
                Ok(id) => self.added.push(id),
                Err(TenancyError::Database(diesel::result::Error::RollbackTransaction)) => {}
                Err(other) => return Err(other),
            }
        }
        count(conn)
    }
}

fn pool_of_one(url: &str, mode: PoolerMode) -> TenantPool {
    // A second checkout would wait for the only connection: make that fail fast.
    TenantPool::builder()
        .max_size(1)
        .pooler_mode(mode)
        .connection_timeout(Duration::from_secs(2))
        .build(url)
        .unwrap()
}

fn bouncer() -> PgBouncer {
    PgBouncer::start_with(&url(), &PgBouncerConfig { pool_size: 2, ..PgBouncerConfig::default() })
        .unwrap_or_else(|e| panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}"))
}

#[test]
fn nested_scoped_calls_share_the_outer_transaction_on_a_pool_of_one() {
    let schemas = Schemas::create("nested", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = pool_of_one(&url(), PoolerMode::Session);
    let mut dal = ItemsDal { tenant: pool.for_tenant(a.clone()), added: Vec::new() };
    // Inside the transaction the nested count sees the two uncommitted rows;
    // the empty body's savepoint is rolled back alone.
    assert_eq!(dal.add_batch(&["one", "", "two"]).unwrap(), 2);
    assert_eq!(dal.added.len(), 2);
    assert_eq!(dal.bodies().unwrap(), ["one", "two"]);
    assert_eq!(pool.state().connections, 1);
    // A plain scope calling a scoped transaction: on the same connection,
    // a transaction of its own, committed before the scope ends.
    dal.add_plain("three").unwrap();
    assert_eq!(rows_of(&mut admin(), a).len(), 3);
}

#[test]
fn an_outer_transaction_that_fails_takes_its_nested_calls_with_it() {
    let schemas = Schemas::create("nestfail", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = pool_of_one(&url(), PoolerMode::Session);
    let tenant = pool.for_tenant(a.clone());
    let result = tenant.tenant_transaction(|conn| {
        add(&mut *conn, a.as_str(), "nested")?;
        assert_eq!(count(&mut *conn)?, 1);
        Err::<(), _>(TenancyError::Database(diesel::result::Error::RollbackTransaction))
    });
    assert!(result.is_err());
    // A panic in a nested call unwinds through the outer transaction, which rolls back.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        tenant.tenant_transaction(|conn| {
            add(&mut *conn, a.as_str(), "before the panic")?;
            let _ = add_then_panic(&mut *conn);
            Ok::<_, TenancyError>(())
        })
    }));
    assert!(panicked.is_err());
    assert!(rows_of(&mut admin(), a).is_empty(), "{:?}", rows_of(&mut admin(), a));
    // The pool's only connection came back clean: idle, in no transaction.
    assert_eq!(count(&tenant).unwrap(), 0);
    let pid = backend_pid(&mut pool.tenant(a).unwrap());
    assert_eq!(
        scalar_i64(
            &mut admin(),
            &format!("(SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'idle')")
        ),
        1
    );
}

#[tenant_scoped(ctx = scope, transaction)]
fn add_then_panic(scope: impl Scope) -> Result<(), TenancyError> {
    diesel::insert_into(items::table)
        .values((items::tenant.eq("x"), items::body.eq("panics")))
        .execute(conn)?;
    panic!("a nested call panics");
}

#[test]
fn a_transaction_with_options_inside_a_transaction_is_refused() {
    let schemas = Schemas::create("nestopts", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = pool_of_one(&url(), PoolerMode::Session);
    let refused = pool.transaction(a, |conn| {
        let mut held: &mut TenantConnection = conn;
        match held.begin(&TransactionOptions::new().serializable()) {
            Err(TenancyError::NestedTransactionOptions) => Ok(()),
            Err(other) => Err(other),
            Ok(nested) => nested.run(|_| Ok::<_, TenancyError>(())).map(|()| panic!("options were accepted")),
        }
    });
    refused.unwrap();
    // On a session checkout with no transaction open, the options apply.
    let mut conn = pool.tenant(a).unwrap();
    let mut held: &mut TenantConnection = &mut conn;
    let level = held
        .begin(&TransactionOptions::new().serializable())
        .unwrap()
        .run(|c| Ok::<_, TenancyError>(setting(c, "transaction_isolation")))
        .unwrap();
    assert_eq!(level, "serializable");
}

fn setting(conn: &mut PgConnection, name: &str) -> String {
    diesel::select(diesel::dsl::sql::<Text>(&format!("current_setting('{name}')"))).get_result(conn).unwrap()
}

#[test]
fn transactions_take_diesels_options() {
    let schemas = Schemas::create("txopts", 1, ITEMS_DDL);
    let a = schemas.first();
    let bouncer = bouncer();
    for pool in
        [pool_of_one(&url(), PoolerMode::Session), pool_of_one(&bouncer.url(), PoolerMode::Transaction)]
    {
        let (level, read_only, deferrable) = pool
            .build_transaction(a)
            .serializable()
            .read_only()
            .deferrable()
            .run(|c| {
                Ok::<_, TenancyError>((
                    setting(c, "transaction_isolation"),
                    setting(c, "transaction_read_only"),
                    setting(c, "transaction_deferrable"),
                ))
            })
            .unwrap();
        assert_eq!((level.as_str(), read_only.as_str(), deferrable.as_str()), ("serializable", "on", "on"));
        // The server refuses a write in a read-only transaction; nothing lands.
        let write = pool.build_transaction(a).read_only().run(|c| {
            diesel::insert_into(items::table)
                .values((items::tenant.eq("x"), items::body.eq("ro")))
                .execute(c)?;
            Ok::<_, TenancyError>(())
        });
        assert!(write.is_err(), "{:?}", pool.pooler_mode());
        let level = pool
            .for_tenant(a.clone())
            .build_tenant_transaction()
            .repeatable_read()
            .run(|c| Ok::<_, TenancyError>(setting(c, "transaction_isolation")))
            .unwrap();
        assert_eq!(level, "repeatable read");
        let shared = pool
            .build_shared_transaction()
            .read_only()
            .run(|c| Ok::<_, TenancyError>(setting(c, "transaction_read_only")))
            .unwrap();
        assert_eq!(shared, "on");
        // The next transaction is back to the server's defaults.
        let level =
            pool.transaction(a, |c| Ok::<_, TenancyError>(setting(c, "transaction_isolation"))).unwrap();
        assert_eq!(level, "read committed");
    }
    assert!(rows_of(&mut admin(), a).is_empty());
}

const NO_MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations::new(&[]);

#[test]
fn scoped_connections_are_diesel_connections() {
    let schemas = Schemas::create("dieselconn", 1, ITEMS_DDL);
    let a = schemas.first();
    let pool = pool_of_one(&url(), PoolerMode::Session);
    let mut conn = pool.tenant(a).unwrap();
    // `&mut conn` wherever diesel wants a connection.
    diesel::insert_into(items::table)
        .values((items::tenant.eq("a"), items::body.eq("one")))
        .execute(&mut conn)
        .unwrap();
    let bodies: Vec<String> = items::table.select(items::body).load(&mut conn).unwrap();
    assert_eq!(bodies, ["one"]);
    let renamed: (i64, String) = diesel::update(items::table)
        .set(items::body.eq("uno"))
        .returning((items::id, items::body))
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(renamed.1, "uno");
    // diesel's own transactions on it, and its migration harness.
    let n = conn
        .transaction(|c| {
            diesel::insert_into(items::table)
                .values((items::tenant.eq("a"), items::body.eq("two")))
                .execute(c)?;
            items::table.count().get_result::<i64>(c)
        })
        .unwrap();
    assert_eq!(n, 2);
    assert!(!conn.has_pending_migration(NO_MIGRATIONS).unwrap());
    conn.batch_execute("SELECT 1").unwrap();
    drop(conn);
    assert_eq!(rows_of(&mut admin(), a).len(), 2);
    // Inside a tenant transaction diesel's transaction is a savepoint.
    let result = pool.transaction(a, |c| {
        let inner: Result<(), diesel::result::Error> = c.transaction(|c| {
            diesel::insert_into(items::table)
                .values((items::tenant.eq("a"), items::body.eq("gone")))
                .execute(c)?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(inner.is_err());
        diesel::insert_into(items::table)
            .values((items::tenant.eq("a"), items::body.eq("kept")))
            .execute(c)?;
        Ok::<_, TenancyError>(())
    });
    result.unwrap();
    let bodies: Vec<String> = rows_of(&mut admin(), a).into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["uno", "two", "kept"]);
}

/// The DAL of an application, written once: plain scopes, a transaction
/// with nested calls, the shared schema.
fn exercise(pool: &TenantPool, tenants: &[tenancy_core::SchemaName]) {
    for (i, tenant) in tenants.iter().enumerate() {
        let mut dal = ItemsDal { tenant: pool.for_tenant(tenant.clone()), added: Vec::new() };
        dal.add_plain(&format!("plain {i}")).unwrap();
        assert_eq!(dal.add_batch(&["batch one", "", "batch two"]).unwrap(), 3);
        assert_eq!(dal.bodies().unwrap(), [format!("plain {i}").as_str(), "batch one", "batch two"]);
        assert_eq!(count(&dal).unwrap(), 3);
        let mut shared = pool.shared().unwrap();
        let schemas: Vec<String> = diesel::select(diesel::dsl::sql::<diesel::sql_types::Array<Text>>(
            "current_schemas(false)::text[]",
        ))
        .get_result(&mut shared)
        .unwrap();
        assert_eq!(schemas, ["public"]);
    }
}

#[test]
fn one_dal_runs_in_session_mode_and_behind_pgbouncer_in_transaction_mode() {
    let session = Schemas::create("dalsession", 2, ITEMS_DDL);
    let pooled = Schemas::create("dalpooled", 2, ITEMS_DDL);
    exercise(&pool_of_one(&url(), PoolerMode::Session), &session.names);
    let bouncer = bouncer();
    exercise(&pool_of_one(&bouncer.url(), PoolerMode::Transaction), &pooled.names);
    // Every row in its own tenant, nothing lost.
    let mut admin = admin();
    for tenant in session.names.iter().chain(&pooled.names) {
        let rows = rows_of(&mut admin, tenant);
        assert_eq!(rows.len(), 3, "{tenant}");
        assert!(rows.iter().all(|r| r.tenant == tenant.as_str()), "{tenant}: {rows:?}");
    }
}
