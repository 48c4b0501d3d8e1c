//! [`TenantConnection`] and [`SharedConnection`]: the guards a checkout
//! hands out. Dropping one checks the connection back in, which restores or
//! retires whatever the borrower changed in its session.

use std::fmt;
use std::ops::{Deref, DerefMut};

use diesel::PgConnection;

use super::checkout::{Pooled, Target};
use super::TenantPool;
use crate::schema_name::SchemaName;

/// A pooled connection scoped to one tenant, from [`TenantPool::tenant`].
///
/// Dereferences to diesel's `PgConnection`; use it as `&mut *conn`. Going out
/// of scope returns it to the pool, which first undoes any session state the
/// borrower changed (see the crate docs).
pub struct TenantConnection {
    pooled: Pooled,
    pool: TenantPool,
    schema: Option<SchemaName>,
}

impl TenantConnection {
    pub(crate) fn new(pooled: Pooled, pool: &TenantPool, target: Target<'_>) -> Self {
        let schema = match target {
            Target::Tenant(schema) => Some(schema.clone()),
            _ => None,
        };
        Self { pooled, pool: pool.clone(), schema }
    }

    pub(crate) fn pooled_mut(&mut self) -> &mut Pooled {
        &mut self.pooled
    }

    /// The tenant this connection was checked out for, or `None` for a
    /// connection scoped to the shared schema.
    pub fn schema(&self) -> Option<&SchemaName> {
        self.schema.as_ref()
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
        // Before r2d2 takes it back (when the field drops right after).
        self.pool.check_in(&mut self.pooled);
    }
}

impl fmt::Debug for TenantConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConnection").field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// A pooled connection scoped to the shared schema, from [`TenantPool::shared`].
pub struct SharedConnection(pub(crate) TenantConnection);

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
