//! Inherent methods: every receiver, generics, lifetimes, where-clauses,
//! `impl Trait`, attributes and docs, `return` and `?` as written.

use std::sync::Arc;

use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, SchemaName, TenancyError, Tenant, TenantContext, TenantPool};
use tenancy_tests::items;

#[derive(Debug)]
pub enum DalError {
    Tenancy(TenancyError),
    Query(diesel::result::Error),
    Empty,
}

impl From<TenancyError> for DalError {
    fn from(e: TenancyError) -> Self {
        Self::Tenancy(e)
    }
}

impl From<diesel::result::Error> for DalError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(e)
    }
}

pub type DalResult<T> = Result<T, DalError>;

#[derive(TenantContext)]
pub struct ItemsDal {
    tenant: Tenant,
    calls: u32,
}

impl ItemsDal {
    /// Documented, with attributes kept.
    #[must_use = "the count is the point"]
    #[inline]
    #[tenant_scoped]
    pub fn count(&self) -> Result<i64, DalError> {
        Ok(items::table.count().get_result(conn)?)
    }

    #[tenant_scoped]
    pub(crate) fn first_body(&self, tenant: &str) -> DalResult<String> {
        #![allow(clippy::needless_return)]
        let bodies: Vec<String> = items::table.filter(items::tenant.eq(tenant)).select(items::body).load(conn)?;
        match bodies.into_iter().next() {
            Some(body) => return Ok(body),
            None => return Err(DalError::Empty),
        }
    }

    #[tenant_scoped]
    fn count_and_remember(&mut self) -> Result<i64, DalError> {
        self.calls += 1;
        Ok(items::table.count().get_result(conn)?)
    }

    #[tenant_scoped]
    fn into_count(self) -> Result<(i64, Tenant), DalError> {
        let n = items::table.count().get_result(conn)?;
        Ok((n, self.tenant))
    }

    #[tenant_scoped]
    fn shared(self: Arc<Self>) -> Result<i64, DalError> {
        Ok(items::table.count().get_result(conn)?)
    }

    #[tenant_scoped]
    fn insert_all<'a, I>(&self, bodies: I, tenant: impl AsRef<str>) -> Result<Vec<i64>, DalError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let rows: Vec<_> = bodies.into_iter().map(|b| (items::tenant.eq(tenant.as_ref()), items::body.eq(b))).collect();
        Ok(diesel::insert_into(items::table).values(&rows).returning(items::id).get_results(conn)?)
    }

    #[tenant_scoped]
    fn ids<'s>(&'s self, prefix: &'s str) -> Result<impl Iterator<Item = String> + 's, DalError> {
        let ids: Vec<i64> = items::table.select(items::id).load(conn)?;
        Ok(ids.into_iter().map(move |id| format!("{prefix}{id}")))
    }

    #[tenant_scoped(transaction)]
    pub fn move_all(&self, from: &str, to: &str) -> Result<usize, DalError> {
        let moved = diesel::update(items::table.filter(items::tenant.eq(from))).set(items::tenant.eq(to)).execute(conn)?;
        if moved == 0 {
            return Err(DalError::Empty);
        }
        Ok(moved)
    }

    #[tenant_scoped(transaction, conn = tx)]
    fn bodies_sorted<T: Ord + From<String>>(&self) -> Result<impl Iterator<Item = T>, DalError> {
        let mut bodies: Vec<T> = items::table.select(items::body).load::<String>(tx)?.into_iter().map(T::from).collect();
        bodies.sort();
        Ok(bodies.into_iter())
    }

    #[tenant_scoped(transaction)]
    unsafe fn unsafe_count(&self) -> Result<i64, TenancyError> {
        Ok(items::table.count().get_result(conn)?)
    }
}

fn main() {
    let _ = (
        ItemsDal::count,
        ItemsDal::first_body,
        ItemsDal::count_and_remember,
        ItemsDal::into_count,
        ItemsDal::shared,
        ItemsDal::ids,
        ItemsDal::move_all,
        ItemsDal::bodies_sorted::<String>,
        ItemsDal::unsafe_count,
    );
    let _ = |dal: &ItemsDal| dal.insert_all(vec!["a", "b"], String::from("acme"));
}
