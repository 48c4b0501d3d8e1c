//! [`Scope`]: where scoped code gets its connection. A tenant context
//! checks one out; a connection the caller already holds for the tenant is
//! used as it is, so scoped calls made inside a scope share its connection
//! and its transaction.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};

use crate::context::TenantContext;
use crate::error::TenancyError;
use crate::guard::Failure;
use crate::pool::{run_open, Ending, TenantConnection, TransactionOptions};
use crate::session::session_of;

/// Where scoped code gets its connection: a tenant context ([`Tenant`](crate::Tenant),
/// a DAL implementing [`TenantContext`]) checks one out of its pool; a
/// [`TenantConnection`] the caller already holds (`&mut TenantConnection`,
/// the `conn` of a `#[tenant_scoped]` body) is used as it is, inside
/// whatever transaction it is in.
///
/// A `#[tenant_scoped]` function whose context parameter is `impl Scope`
/// can be called either way, so scoped functions compose the way diesel
/// code passes `&mut conn` down:
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{tenant_scoped, Scope, TenancyError, Tenant};
/// # diesel::table! { accounts (id) { id -> BigInt, balance -> BigInt } }
///
/// /// Callable with a context (checks a connection out) or with a held connection.
/// #[tenant_scoped(ctx = scope)]
/// fn balance(scope: impl Scope, id: i64) -> Result<i64, TenancyError> {
///     Ok(accounts::table.find(id).select(accounts::balance).first(conn)?)
/// }
///
/// #[tenant_scoped(ctx = tenant, transaction)]
/// fn transfer(tenant: &Tenant, from: i64, to: i64, amount: i64) -> Result<(), TenancyError> {
///     // Inside the transaction: sees its uncommitted rows, takes no second connection.
///     if balance(&mut *conn, from)? < amount {
///         return Err(diesel::result::Error::RollbackTransaction.into());
///     }
///     diesel::update(accounts::table.find(from)).set(accounts::balance.eq(accounts::balance - amount)).execute(conn)?;
///     diesel::update(accounts::table.find(to)).set(accounts::balance.eq(accounts::balance + amount)).execute(conn)?;
///     Ok(())
/// }
///
/// # fn f(tenant: &Tenant) -> Result<(), TenancyError> {
/// let before = balance(tenant, 1)?; // a connection of its own
/// transfer(tenant, 1, 2, 10)?;
/// # Ok(()) }
/// ```
///
/// A held connection carries its tenant: the function runs for that
/// tenant, so there is no way to hand one tenant's connection to code
/// running for another. A transaction asked for inside a transaction is a
/// savepoint of it: an `Err` rolls back the inner function's work only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot say which tenant scoped code runs for: it is neither a tenant context nor a connection held for a tenant",
    label = "scoped code gets its connection from this",
    note = "pass a tenant context (a `tenancy_core::Tenant` from `pool.for_tenant(schema)`, or a DAL implementing `TenantContext`) to check a connection out, or `&mut TenantConnection` (the `conn` of a `#[tenant_scoped]` body, or a `pool.tenant(..)` checkout) to use one you hold",
    note = "a `TenantPool` serves every tenant, and a plain `PgConnection` or a `SharedConnection` is scoped to none"
)]
pub trait Scope: sealed::Sealed {
    /// The connection a scope hands out: checked out for a context,
    /// borrowed for a held connection.
    type Connection<'a>: ScopedConnection
    where
        Self: 'a;

    /// The same, inside a transaction begun for the caller.
    type Transaction<'a>: ScopedConnection
    where
        Self: 'a;

    /// A connection for the scope's tenant: a checkout (see
    /// [`TenantPool::tenant`](crate::TenantPool::tenant)), or the one held.
    fn enter(&mut self) -> Result<Self::Connection<'_>, TenancyError>;

    /// A connection inside a transaction begun with `options`: a tenant
    /// transaction of its own for a context; for a held connection, a
    /// savepoint of the transaction it is in, or a transaction of its own
    /// if it is in none (options are allowed only then:
    /// [`TenancyError::NestedTransactionOptions`]).
    fn begin(&mut self, options: &TransactionOptions) -> Result<Self::Transaction<'_>, TenancyError>;
}

mod sealed {
    pub trait Sealed {}
    impl<C: crate::TenantContext + ?Sized> Sealed for C {}
    impl Sealed for &mut crate::TenantConnection {}
}

/// A connection handed out by a [`Scope`], which ends what the scope began
/// once the code given to [`run`](Self::run) is done.
pub trait ScopedConnection: run_sealed::Sealed {
    /// Runs `f` on the connection, then ends the scope: a transaction
    /// commits when `f` returns `Ok` and rolls back otherwise (a panic
    /// continues after the rollback); a checkout goes back to the pool.
    fn run<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>;
}

mod run_sealed {
    pub trait Sealed {}
    impl Sealed for crate::TenantConnection {}
    impl Sealed for &mut crate::TenantConnection {}
    impl Sealed for super::Nested<'_> {}
}

impl<C: TenantContext + ?Sized> Scope for C {
    type Connection<'a>
        = TenantConnection
    where
        Self: 'a;
    type Transaction<'a>
        = TenantConnection
    where
        Self: 'a;

    fn enter(&mut self) -> Result<TenantConnection, TenancyError> {
        self.tenant_connection()
    }

    fn begin(&mut self, options: &TransactionOptions) -> Result<TenantConnection, TenancyError> {
        self.tenant_pool().begin_tenant(self.tenant_schema(), options, Ending::Transaction)
    }
}

impl Scope for &mut TenantConnection {
    type Connection<'a>
        = &'a mut TenantConnection
    where
        Self: 'a;
    type Transaction<'a>
        = Nested<'a>
    where
        Self: 'a;

    fn enter(&mut self) -> Result<&mut TenantConnection, TenancyError> {
        Ok(&mut **self)
    }

    fn begin(&mut self, options: &TransactionOptions) -> Result<Nested<'_>, TenancyError> {
        let conn: &mut TenantConnection = self;
        let depth =
            AnsiTransactionManager::transaction_manager_status_mut(&mut **conn).transaction_depth()?;
        match depth {
            None => AnsiTransactionManager::begin_transaction_sql(&mut **conn, &options.begin_sql())?,
            Some(_) if !options.is_default() => return Err(TenancyError::NestedTransactionOptions),
            Some(_) => AnsiTransactionManager::begin_transaction(&mut **conn)?,
        }
        let id = session_of(conn).map(|s| s.state.id);
        Ok(Nested { conn, top: depth.is_none(), id })
    }
}

impl ScopedConnection for TenantConnection {
    fn run<T, E, F>(mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        if self.open.is_some() {
            run_open(self, f)
        } else {
            f(&mut self)
        }
    }
}

impl ScopedConnection for &mut TenantConnection {
    fn run<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        f(self)
    }
}

/// A transaction begun on a held connection: a savepoint of the
/// transaction it was in, or (`top`) a transaction of its own.
#[derive(Debug)]
pub struct Nested<'a> {
    conn: &'a mut TenantConnection,
    top: bool,
    /// The connection it began on.
    id: Option<u64>,
}

impl ScopedConnection for Nested<'_> {
    fn run<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut TenantConnection) -> Result<T, E>,
        E: From<TenancyError>,
    {
        let Nested { conn, top, id } = self;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *conn)));
        let pg = &mut **conn;
        if id.is_none() || session_of(pg).map(|s| s.state.id) != id {
            // The body exchanged the connection for another: never end
            // anything on that one; this transaction ends with the one it began on.
            return match outcome {
                Err(panic) => resume_unwind(panic),
                Ok(_) => Err(E::from(TenancyError::ConnectionReplaced)),
            };
        }
        match outcome {
            Ok(Ok(value)) => {
                // A failure the body swallowed left the transaction aborted,
                // which a bare COMMIT would roll back without a word.
                let failed = session_of(pg).is_some_and(|s| s.guard.failure() != Failure::None);
                let checked = if top && failed { pg.batch_execute("SELECT 1") } else { Ok(()) };
                match checked.and_then(|()| AnsiTransactionManager::commit_transaction(pg)) {
                    Ok(()) => Ok(value),
                    Err(error) => {
                        let _ = AnsiTransactionManager::rollback_transaction(pg);
                        Err(E::from(TenancyError::Database(error)))
                    }
                }
            }
            Ok(Err(error)) => {
                let _ = AnsiTransactionManager::rollback_transaction(pg);
                Err(error)
            }
            Err(panic) => {
                let _ = AnsiTransactionManager::rollback_transaction(pg);
                resume_unwind(panic)
            }
        }
    }
}
