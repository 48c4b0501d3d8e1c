use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, Tenant};
use tenancy_tests::items;

#[derive(Debug)]
enum DalError {
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for DalError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(e)
    }
}

#[tenant_scoped(ctx = tenant)]
fn count(tenant: &Tenant) -> Result<i64, DalError> {
    Ok(items::table.count().get_result(conn)?)
}

#[tenant_scoped(ctx = tenant, transaction)]
fn clear(tenant: &Tenant) -> QueryResult<usize> {
    diesel::delete(items::table).execute(conn)
}

fn main() {}
