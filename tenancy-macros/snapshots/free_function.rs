// Written:

#[tenant_scoped(ctx = tenant, conn = c)]
pub fn count<C: TenantContext + ?Sized>(tenant: &C) -> Result<i64, TenancyError> {
    Ok(agents::table.count().get_result(c)?)
}

// Expanded:

pub fn count<C: TenantContext + ?Sized>(tenant: &C) -> Result<i64, TenancyError> {
    match ::tenancy_core::__private::tenant_connection(&tenant) {
        ::core::result::Result::Ok(mut tenant_connection) => {
            #[allow(unused_variables)]
            let c: &mut ::tenancy_core::diesel::PgConnection = &mut tenant_connection;
            Ok(agents::table.count().get_result(c)?)
        }
        ::core::result::Result::Err(error) => {
            ::tenancy_core::__private::checkout_failed(error)
        }
    }
}
