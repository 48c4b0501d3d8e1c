//! Dropping tenants: [`drop_tenant`] and [`drop_tenant_with`]. A drop fences
//! the tenant first (new checkouts get `TenantNotFound`, in every pool that
//! hears of it), then drops its schema and registry row together once the
//! transactions still running in it let go, or gives up and serves it again.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::error::TenancyError;
use crate::pool::TenantPool;
use crate::registry::{Registry, TenantState};
use crate::schema_name::SchemaName;
use crate::session::trusted;

/// How long [`drop_tenant`] waits, in all, for the tenant's tables to be free.
const DROP_WAIT: Duration = Duration::from_secs(30);
/// How long one attempt to drop waits for a lock: shorter than PostgreSQL's
/// default `deadlock_timeout` (1 s), so that a drop that would deadlock
/// with a transaction still running gives up itself instead of leaving that
/// transaction to be the victim.
const ATTEMPT_LOCK_TIMEOUT_MS: u64 = 200;

/// Drops a registered tenant: its schema, with everything in it, and its
/// registry row.
///
/// First the tenant is **fenced**: its registry row says `dropping`, and
/// every pool (in this process at once, in others by notification) stops
/// handing out connections for it: new checkouts get
/// [`TenancyError::TenantNotFound`]. Then the schema is dropped as soon as
/// the transactions already running in it let go of its tables, waiting at
/// most 30 seconds in all; each attempt waits only briefly for locks, so a
/// transaction still running is never made the victim of a deadlock. If the
/// tables stay busy, nothing is dropped, the tenant is served again, and the
/// error is [`TenancyError::TenantBusy`]. Never half done: either the schema
/// and its row are gone, or both are as they were.
///
/// Only registered tenants are dropped; anything else is
/// [`TenancyError::TenantNotFound`] (an unregistered schema, even one that
/// looks like a tenant), and the pool's registry, shared and extension
/// schemas are [`TenancyError::ReservedSchema`]. `public`,
/// `information_schema` and `pg_*` schemas cannot even be named:
/// [`SchemaName`] rejects them. A registered tenant whose schema is already
/// gone has its registry row removed.
///
/// ```no_run
/// # use tenancy_core::{drop_tenant, schema, TenantPool};
/// # let pool = TenantPool::connect("postgres://localhost/app")?;
/// drop_tenant(&pool, &schema!("acme"))?;
/// # Ok::<(), tenancy_core::TenancyError>(())
/// ```
pub fn drop_tenant(pool: &TenantPool, schema: &SchemaName) -> Result<(), TenancyError> {
    drop_tenant_with(pool, schema, |_| Ok::<(), TenancyError>(()))
}

/// [`drop_tenant`], with `hook` run in the transaction that drops the
/// schema, just before it: the hook's writes (deleting the tenant's account
/// in the shared schema, say) commit with the drop, or not at all.
///
/// The hook runs with the search path set to the tenant's schema, so it can
/// read the tenant's tables (to archive them, say); shared tables are named
/// schema-qualified. When it returns `Err`, nothing is dropped, the tenant
/// is served again, and the error is returned. If the drop has to wait for
/// the tenant's tables and tries again, the hook runs again (its earlier
/// run was rolled back).
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{drop_tenant_with, schema, TenancyError, TenantPool};
/// diesel::table! { public.accounts (id) { id -> BigInt, tenant -> Text } }
///
/// let pool = TenantPool::connect("postgres://localhost/app")?;
/// let acme = schema!("acme");
/// drop_tenant_with(&pool, &acme, |conn| {
///     diesel::delete(accounts::table.filter(accounts::tenant.eq(acme.as_str()))).execute(conn)?;
///     Ok::<_, TenancyError>(())
/// })?;
/// # Ok::<(), TenancyError>(())
/// ```
pub fn drop_tenant_with<E, F>(pool: &TenantPool, schema: &SchemaName, mut hook: F) -> Result<(), E>
where
    F: FnMut(&mut PgConnection) -> Result<(), E>,
    E: From<TenancyError>,
{
    let _in_span =
        tracing::info_span!(target: "tenancy", "tenancy.drop_tenant", tenant = schema.as_str()).entered();
    if let Some(role) = pool.inner.layout.role_of(schema.as_str()) {
        return Err(TenancyError::ReservedSchema { schema: schema.clone(), role }.into());
    }
    let registry = Registry::new(&pool.inner.layout);
    let home = pool.registry_schema().to_owned();
    // Fence: committed and announced before anything waits on the tenant's tables.
    let before = pool.internal_transaction(&home, |conn| -> Result<_, TenancyError> {
        registry.ensure(conn)?;
        Registry::lock_tenant(conn, schema)?;
        let before = registry.set_state(conn, schema, TenantState::Dropping)?;
        if before.is_some() {
            registry.notify(conn, "fence", schema)?;
        }
        Ok(before)
    })?;
    pool.forget_tenant(schema);
    let Some(before) = before else {
        return Err(TenancyError::TenantNotFound { schema: schema.clone() }.into());
    };
    let unfence = || {
        let _ = pool.internal_transaction(&home, |conn| -> Result<_, TenancyError> {
            Registry::lock_tenant(conn, schema)?;
            registry.set_state(conn, schema, before)
        });
    };

    let started = Instant::now();
    loop {
        let attempt = pool.internal_transaction(schema.as_str(), |conn| -> Result<_, Stop<E>> {
            Registry::lock_tenant(conn, schema)?;
            if busy(conn, schema)? {
                return Ok(false);
            }
            hook(conn).map_err(Stop::Hook)?;
            let sql = format!(
                "SET LOCAL lock_timeout = {ATTEMPT_LOCK_TIMEOUT_MS}; DROP SCHEMA IF EXISTS {} CASCADE",
                schema.quoted()
            );
            trusted(conn, |c| c.batch_execute(&sql)).map_err(TenancyError::from)?;
            registry.delete(conn, schema)?;
            registry.notify(conn, "drop", schema)?;
            Ok(true)
        });
        let error = match attempt {
            Ok(true) => {
                pool.forget_tenant(schema);
                return Ok(());
            }
            Ok(false) => None,
            Err(Stop::Hook(error)) => {
                unfence();
                return Err(error);
            }
            Err(Stop::Tenancy(error)) => Some(error),
        };
        // A lock wait that timed out is business as usual here; anything
        // else (a permission, say) will not get better by waiting.
        let waiting = match &error {
            None => true,
            Some(_) => pool.internal_transaction(&home, |conn| busy(conn, schema)).unwrap_or(false),
        };
        if !waiting || started.elapsed() >= DROP_WAIT {
            // Unfence: the tenant is served again, exactly as before.
            unfence();
            return Err(match error {
                Some(error) if !waiting => error,
                _ => TenancyError::TenantBusy { schema: schema.clone(), waited: started.elapsed() },
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why one attempt of [`drop_tenant_with`] stopped: the library's error, or the hook's.
enum Stop<E> {
    Tenancy(TenancyError),
    Hook(E),
}

impl<E> From<TenancyError> for Stop<E> {
    fn from(error: TenancyError) -> Self {
        Self::Tenancy(error)
    }
}

/// `true` while another session holds a lock on something in the tenant's schema.
fn busy(conn: &mut PgConnection, schema: &SchemaName) -> Result<bool, TenancyError> {
    #[derive(QueryableByName)]
    struct Holders {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<Holders> = trusted(conn, |conn| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation \
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND l.pid <> pg_catalog.pg_backend_pid() \
             AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())",
        )
        .bind::<diesel::sql_types::Text, _>(schema.quoted())
        .load(conn)
    })?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}
