// Written:

impl AgentsDal {
    /// Creates an agent.
    #[must_use = "the agent may not have been created"]
    #[tenant_scoped]
    pub fn create(&self, new: &NewAgent) -> Result<Agent, DalError> {
        Ok(diesel::insert_into(agents::table).values(new).get_result(conn)?)
    }
}

// Expanded:

impl AgentsDal {
    /// Creates an agent.
    #[must_use = "the agent may not have been created"]
    pub fn create(&self, new: &NewAgent) -> Result<Agent, DalError> {
        match ::tenancy_core::__private::tenant_connection(&self) {
            ::core::result::Result::Ok(mut tenant_connection) => {
                #[allow(unused_variables)]
                let conn: &mut ::tenancy_core::diesel::PgConnection = &mut tenant_connection;
                Ok(diesel::insert_into(agents::table).values(new).get_result(conn)?)
            }
            ::core::result::Result::Err(error) => {
                ::tenancy_core::__private::checkout_failed(error)
            }
        }
    }
}
