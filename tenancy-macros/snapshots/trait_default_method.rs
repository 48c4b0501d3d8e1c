// Written:

trait AgentsRepo: TenantContext {
    #[tenant_scoped]
    fn names(&self) -> QueryResultOf<Vec<String>> {
        agents::table.select(agents::name).load(conn).map_err(Into::into)
    }
}

// Expanded:

trait AgentsRepo: TenantContext {
    fn names(&self) -> QueryResultOf<Vec<String>> {
        match ::tenancy_core::__private::tenant_connection(&self) {
            ::core::result::Result::Ok(mut tenant_connection) => {
                #[allow(unused_variables)]
                let conn: &mut ::tenancy_core::diesel::PgConnection = &mut tenant_connection;
                agents::table.select(agents::name).load(conn).map_err(Into::into)
            }
            ::core::result::Result::Err(error) => {
                ::tenancy_core::__private::checkout_failed(error)
            }
        }
    }
}
