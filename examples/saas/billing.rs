//! The shared schema: plans and accounts, one table each for all tenants.
//! Reached only through the pool's shared connections, never through a
//! tenant's.

use diesel::prelude::*;
use tenancy_core::{SchemaName, TenancyError, TenantPool};

use crate::schema::shared::{accounts, plans};

/// A plan, as the shared `plans` table has it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = plans)]
pub struct Plan {
    /// `free`, `team`.
    pub id: String,
    /// Shown to people.
    pub name: String,
    /// How many projects a tenant on this plan may have.
    pub max_projects: i32,
    /// The monthly price.
    pub monthly_cents: i32,
}

/// Accounts and plans.
#[derive(Clone)]
pub struct Billing {
    pool: TenantPool,
}

impl Billing {
    /// Billing on `pool`'s shared schema.
    pub fn new(pool: TenantPool) -> Self {
        Self { pool }
    }

    /// The plan called `id`, if there is one.
    pub fn plan(&self, id: &str) -> Result<Option<Plan>, TenancyError> {
        let mut conn = self.pool.shared()?;
        Ok(plans::table.find(id).select(Plan::as_select()).first(&mut *conn).optional()?)
    }

    /// Records a new tenant's account.
    pub fn open_account(&self, tenant: &SchemaName, company: &str, plan: &str) -> Result<(), TenancyError> {
        let mut conn = self.pool.shared()?;
        diesel::insert_into(accounts::table)
            .values((
                accounts::schema_name.eq(tenant.as_str()),
                accounts::company.eq(company),
                accounts::plan_id.eq(plan),
            ))
            .execute(&mut *conn)?;
        Ok(())
    }

    /// Closes a tenant's account.
    pub fn close_account(&self, tenant: &SchemaName) -> Result<(), TenancyError> {
        let mut conn = self.pool.shared()?;
        diesel::delete(accounts::table.find(tenant.as_str())).execute(&mut *conn)?;
        Ok(())
    }

    /// The plan a tenant is on, if it has an account.
    pub fn plan_of(&self, tenant: &SchemaName) -> Result<Option<Plan>, TenancyError> {
        let mut conn = self.pool.shared()?;
        Ok(accounts::table
            .inner_join(plans::table)
            .filter(accounts::schema_name.eq(tenant.as_str()))
            .select(Plan::as_select())
            .first(&mut *conn)
            .optional()?)
    }

    /// Monthly revenue over all accounts, in cents, and the number of accounts.
    pub fn monthly_revenue(&self) -> Result<(i64, usize), TenancyError> {
        let mut conn = self.pool.shared()?;
        let prices: Vec<i32> =
            accounts::table.inner_join(plans::table).select(plans::monthly_cents).load(&mut *conn)?;
        Ok((prices.iter().map(|&c| i64::from(c)).sum(), prices.len()))
    }
}
