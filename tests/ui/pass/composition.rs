//! Scoped functions compose: a function whose context is `impl Scope` runs
//! on a context (checking a connection out) or on a connection its caller
//! holds (inside the caller's transaction); `&mut self` methods may use
//! `self` in a transaction body.

use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, Scope, TenancyError, Tenant, TenantConnection, TenantContext};
use tenancy_tests::items;

#[tenant_scoped(ctx = scope)]
fn count(scope: impl Scope) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = scope, transaction)]
fn add(scope: impl Scope, body: &str) -> Result<i64, TenancyError> {
    Ok(diesel::insert_into(items::table)
        .values((items::tenant.eq("t"), items::body.eq(body)))
        .returning(items::id)
        .get_result(conn)?)
}

#[tenant_scoped(ctx = held)]
fn count_on(held: &mut TenantConnection) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

#[derive(TenantContext)]
pub struct ItemsDal {
    tenant: Tenant,
    added: Vec<i64>,
}

impl ItemsDal {
    #[tenant_scoped(transaction)]
    fn add_two(&mut self, first: &str, second: &str) -> Result<i64, TenancyError> {
        // Both inside this transaction, on its connection.
        self.added.push(add(&mut *conn, first)?);
        self.added.push(add(&mut *conn, second)?);
        let n = count(&mut *conn)?;
        Ok(n + count_on(conn)?)
    }
}

fn main() {
    let _ = |tenant: &Tenant| -> Result<i64, TenancyError> {
        let before = count(tenant)?;
        add(tenant, "x")?;
        let mut held = tenant.tenant_connection()?;
        let inside = count(&mut held)? + count_on(&mut held)?;
        let in_tx = tenant.tenant_transaction(|conn| count(conn))?;
        Ok(before + inside + in_tx)
    };
    let _ = ItemsDal::add_two;
}
