//! The async API (feature `tokio`): diesel is synchronous, so the pool wait
//! and the closure run on tokio's blocking pool, never on a runtime worker
//! thread, the way deadpool-diesel's `interact` does it.
//!
//! * A panic in the closure continues as a panic in the task awaiting it
//!   (what a synchronous call would have done).
//! * Cancel safety: the work runs on a blocking thread that the future does
//!   not own. Dropping the future before the closure has started (while it
//!   waits for a blocking thread or a pooled connection) means the closure
//!   never runs; once it has started it runs to the end, and its connection
//!   goes back through the pool's normal check-in (a transaction commits on
//!   `Ok` and rolls back on `Err` or panic, as if it had been awaited). The
//!   result is then dropped. No connection is ever left mid-transaction.

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::context::Tenant;
use crate::error::TenancyError;
use crate::pool::{SharedConnection, TenantConnection, TenantPool};
use crate::schema_name::SchemaName;

/// Set to `false` when the future awaiting the work is dropped.
struct Wanted(Arc<AtomicBool>);

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `work` on tokio's blocking pool and waits for it without blocking
/// the runtime. `work` is told whether its result is still wanted.
async fn offload<R, W>(work: W) -> Result<R, TenancyError>
where
    W: FnOnce(&AtomicBool) -> R + Send + 'static,
    R: Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current().map_err(|_| TenancyError::NoRuntime)?;
    let wanted = Arc::new(AtomicBool::new(true));
    let _wanted = Wanted(Arc::clone(&wanted));
    match handle.spawn_blocking(move || work(&wanted)).await {
        Ok(result) => Ok(result),
        Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
        // The runtime shut down before the task started.
        Err(_) => Err(TenancyError::Cancelled),
    }
}

/// `Err(Cancelled)` when the result is no longer wanted: the closure is
/// then not started.
fn still_wanted(wanted: &AtomicBool) -> Result<(), TenancyError> {
    if wanted.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(TenancyError::Cancelled)
    }
}

impl TenantPool {
    /// Runs `f` with a connection scoped to `schema` ([`TenantPool::tenant`]),
    /// on tokio's blocking pool: the async counterpart of a checkout, in the
    /// style of deadpool-diesel's `interact`. Needs the `tokio` feature.
    ///
    /// The wait for a pooled connection and the closure both run on a
    /// blocking thread, never on a runtime worker. A panic in `f` continues
    /// as a panic in the awaiting task. Dropping the future before `f` has
    /// started means `f` never runs; once started it runs to the end and the
    /// connection is checked in as usual, its result dropped. Behind a
    /// transaction pooler the checkout is one transaction, committed before
    /// an `Ok` is returned (an error if it could not commit, as
    /// [`TenantConnection::close`] reports). Needs a tokio runtime
    /// ([`TenancyError::NoRuntime`] otherwise), either flavour.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenancy_core::TenancyError> {
    /// use diesel::prelude::*;
    /// use tenancy_core::{schema, TenancyError, TenantPool};
    ///
    /// let pool = TenantPool::connect("postgres://localhost/app")?;
    /// let rows = pool
    ///     .run(&schema!("acme"), |conn| {
    ///         Ok::<_, TenancyError>(diesel::sql_query("UPDATE notes SET body = 'done'").execute(conn)?)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn run<T, E, F>(
        &self,
        schema: &SchemaName,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TenancyError> + Send + 'static,
    {
        let (pool, schema) = (self.clone(), schema.clone());
        let work = move |wanted: &AtomicBool| {
            let mut conn = pool.tenant(&schema)?;
            still_wanted(wanted)?;
            let value = f(&mut conn)?;
            // Behind a transaction pooler the scope commits here: say if it did not.
            conn.close()?;
            Ok(value)
        };
        async move { offload(work).await? }
    }

    /// Runs `f` in a transaction scoped to `schema`
    /// ([`TenantPool::transaction`]) on tokio's blocking pool: commits when
    /// `f` returns `Ok`, rolls back on `Err` and on panic (which then
    /// continues in the awaiting task).
    ///
    /// A future dropped before `f` has started never starts it; after that
    /// the transaction ends exactly as if it had been awaited (committed on
    /// `Ok`), and its result is dropped. To make work conditional on being
    /// awaited, let `f` return `Err` when it should not commit.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenancy_core::TenancyError> {
    /// use diesel::prelude::*;
    /// use tenancy_core::{schema, TenancyError, TenantPool};
    ///
    /// let pool = TenantPool::connect("postgres://localhost/app")?;
    /// pool.run_transaction(&schema!("acme"), |conn| {
    ///     diesel::sql_query("DELETE FROM notes").execute(conn)?;
    ///     diesel::sql_query("INSERT INTO notes (body) VALUES ('fresh')").execute(conn)?;
    ///     Ok::<_, TenancyError>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn run_transaction<T, E, F>(
        &self,
        schema: &SchemaName,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TenancyError> + Send + 'static,
    {
        let (pool, schema) = (self.clone(), schema.clone());
        let work = move |wanted: &AtomicBool| {
            pool.transaction(&schema, |conn| {
                still_wanted(wanted)?;
                f(conn)
            })
        };
        async move { offload(work).await? }
    }

    /// Runs `f` with a connection scoped to the shared schema
    /// ([`TenantPool::shared`]) on tokio's blocking pool, as
    /// [`TenantPool::run`] does for a tenant.
    pub fn run_shared<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut SharedConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TenancyError> + Send + 'static,
    {
        let pool = self.clone();
        let work = move |wanted: &AtomicBool| {
            let mut conn = pool.shared()?;
            still_wanted(wanted)?;
            let value = f(&mut conn)?;
            conn.close()?;
            Ok(value)
        };
        async move { offload(work).await? }
    }

    /// [`TenantPool::check_tenant`] for async code: answered on the spot
    /// (no I/O, no blocking thread) when this pool proved `schema` within
    /// `tenant_cache_ttl`, and on tokio's blocking pool otherwise.
    ///
    /// ```no_run
    /// # async fn f(pool: tenancy_core::TenantPool) -> Result<(), tenancy_core::TenancyError> {
    /// let schema = tenancy_core::parse_schema("acme")?; // from a subdomain
    /// pool.check_tenant_async(&schema).await?; // `TenantNotFound` for an unknown one
    /// # Ok(()) }
    /// ```
    pub fn check_tenant_async(
        &self,
        schema: &SchemaName,
    ) -> impl Future<Output = Result<(), TenancyError>> + Send + 'static {
        self.inner.roster.poll_nonblocking();
        let cached = self.cached_tenant(schema);
        let (pool, schema) = (self.clone(), schema.clone());
        async move {
            if cached? {
                return Ok(());
            }
            offload(move |_: &AtomicBool| pool.check_tenant(&schema)).await?
        }
    }
}

impl Tenant {
    /// [`TenantPool::run`] for this tenant.
    ///
    /// ```no_run
    /// # async fn f(tenant: tenancy_core::Tenant) -> Result<(), tenancy_core::TenancyError> {
    /// use diesel::prelude::*;
    /// let n: i64 = tenant
    ///     .run(|conn| Ok::<_, tenancy_core::TenancyError>(diesel::sql_query("SELECT 1").execute(conn)? as i64))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn run<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TenancyError> + Send + 'static,
    {
        self.pool().run(self.schema(), f)
    }

    /// [`TenantPool::run_transaction`] for this tenant.
    pub fn run_transaction<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TenancyError> + Send + 'static,
    {
        self.pool().run_transaction(self.schema(), f)
    }
}
