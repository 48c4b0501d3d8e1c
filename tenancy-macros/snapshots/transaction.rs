// Written:

impl AgentsDal {
    #[tenant_scoped(transaction)]
    pub fn move_all<'a>(
        &'a self,
        from: i64,
        to: impl Into<i64>,
    ) -> Result<impl Iterator<Item = &'a str>, DalError>
    where
        Self: Sized,
    {
        #![allow(clippy::needless_question_mark)]
        let moved = diesel::update(agents::table.filter(agents::team.eq(from)))
            .set(agents::team.eq(to.into()))
            .execute(conn)?;
        if moved == 0 {
            return Err(DalError::NothingToMove);
        }
        Ok(std::iter::empty())
    }
}

// Expanded:

impl AgentsDal {
    pub fn move_all<'a>(
        &'a self,
        from: i64,
        to: impl Into<i64>,
    ) -> Result<impl Iterator<Item = &'a str>, DalError>
    where
        Self: Sized,
    {
        #![allow(clippy::needless_question_mark)]
        ::tenancy_core::__private::tenant_transaction(
            &self,
            |conn: &mut ::tenancy_core::diesel::PgConnection| {
                #[allow(
                    unknown_lints,
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::let_unit_value,
                    clippy::let_with_type_underscore,
                    clippy::needless_return,
                    clippy::unreachable
                )]
                if false {
                    let fake_return: Result<_, DalError> = loop {};
                    return fake_return;
                }
                let moved = diesel::update(agents::table.filter(agents::team.eq(from)))
                    .set(agents::team.eq(to.into()))
                    .execute(conn)?;
                if moved == 0 {
                    return Err(DalError::NothingToMove);
                }
                Ok(std::iter::empty())
            },
        )
    }
}
