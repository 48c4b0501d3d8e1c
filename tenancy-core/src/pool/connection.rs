//! [`TenantConnection`] and [`SharedConnection`]: the guards a checkout
//! hands out. Dropping one checks the connection back in, which restores or
//! retires whatever the borrower changed in its session; a scope that runs
//! as a transaction (behind a transaction pooler) is committed first.

use std::fmt;
use std::ops::{Deref, DerefMut};

use diesel::PgConnection;

use super::checkout::Target;
use super::manager::Pooled;
use super::TenantPool;
use crate::error::TenancyError;
use crate::schema_name::SchemaName;

/// A pooled connection scoped to one tenant, from [`TenantPool::tenant`].
///
/// It is a diesel connection in its own right (`Connection`,
/// `LoadConnection`, `MigrationConnection`, as diesel's own pooled
/// connections are), so `&mut conn` goes wherever diesel wants a
/// connection, and it dereferences to `PgConnection` for the rest. Going out
/// of scope returns it to the pool, which first undoes any session state the
/// borrower changed (see the crate docs).
///
/// Behind a transaction pooler ([`PoolerMode::Transaction`](crate::PoolerMode))
/// the scope is one transaction, committed when the connection goes back:
/// use [`close`](Self::close) to learn whether that commit succeeded.
pub struct TenantConnection {
    pooled: Pooled,
    pool: TenantPool,
    held: Held,
    /// A transaction of the pool's that this guard must end.
    pub(crate) open: Option<Open>,
}

/// What a checked-out connection is scoped to.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    Tenant(SchemaName),
    Shared,
    /// The crate's own work in a schema that may not exist yet.
    Internal(Box<str>),
}

impl Held {
    pub(crate) fn target(&self) -> Target<'_> {
        match self {
            Held::Tenant(schema) => Target::Tenant(schema),
            Held::Shared => Target::Shared,
            Held::Internal(first) => Target::Internal(first),
        }
    }
}

/// How an open transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A tenant transaction: commits when its body returns `Ok`.
    Transaction,
    /// A scope that runs as a transaction (behind a transaction pooler):
    /// commits what it did whatever the body returns, as a session would
    /// have, unless a statement in it failed or was refused.
    Scope,
}

/// A transaction the pool opened on a checkout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    /// The connection it began on.
    pub(crate) id: u64,
    pub(crate) ending: Ending,
}

impl TenantConnection {
    pub(crate) fn new(pooled: Pooled, pool: &TenantPool, target: Target<'_>) -> Self {
        let held = match target {
            Target::Tenant(schema) => Held::Tenant(schema.clone()),
            Target::Shared => Held::Shared,
            Target::Internal(first) => Held::Internal(first.into()),
        };
        Self { pooled, pool: pool.clone(), held, open: None }
    }

    pub(crate) fn pooled_mut(&mut self) -> &mut Pooled {
        &mut self.pooled
    }

    /// The connection, its pool and its scope, borrowed together.
    pub(crate) fn parts(&mut self) -> (&mut Pooled, &TenantPool, &Held) {
        (&mut self.pooled, &self.pool, &self.held)
    }

    /// The tenant this connection was checked out for, or `None` for a
    /// connection scoped to the shared schema.
    pub fn schema(&self) -> Option<&SchemaName> {
        match &self.held {
            Held::Tenant(schema) => Some(schema),
            _ => None,
        }
    }

    /// The pool it came from.
    pub fn pool(&self) -> &TenantPool {
        &self.pool
    }

    /// Returns the connection to the pool now, reporting what dropping it
    /// would only log: behind a transaction pooler, whether the scope's
    /// transaction committed (a failed statement, a refused one or a failed
    /// `COMMIT` is an error, and nothing of the scope was committed). In
    /// session mode every statement committed as it ran, and this is `Ok`.
    pub fn close(mut self) -> Result<(), TenancyError> {
        match self.open.take() {
            Some(open) => self.pool.end_scope(&mut self.pooled, &self.held, open, true),
            None => Ok(()),
        }
    }
}

impl Deref for TenantConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.pooled
    }
}

impl DerefMut for TenantConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.pooled
    }
}

impl Drop for TenantConnection {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            // Not ended by its owner: a scope behind a pooler going back
            // (committed), or a transaction unwinding (rolled back).
            let commit = open.ending == Ending::Scope && !std::thread::panicking();
            if let Err(error) = self.pool.end_scope(&mut self.pooled, &self.held, open, commit) {
                self.pool.scope_not_committed(&self.held, &error);
            }
        }
        // Before r2d2 takes it back (when the field drops right after).
        self.pool.check_in(&mut self.pooled);
    }
}

impl fmt::Debug for TenantConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConnection").field("schema", &self.schema()).finish_non_exhaustive()
    }
}

/// A pooled connection scoped to the shared schema, from [`TenantPool::shared`].
///
/// A diesel connection like [`TenantConnection`], with the same behaviour
/// behind a transaction pooler.
pub struct SharedConnection(pub(crate) TenantConnection);

impl SharedConnection {
    /// Returns the connection to the pool now; see [`TenantConnection::close`].
    pub fn close(self) -> Result<(), TenancyError> {
        self.0.close()
    }
}

impl Deref for SharedConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl DerefMut for SharedConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

impl fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedConnection").finish()
    }
}
