//! `#[tenant_scoped]` on a real PostgreSQL: scoped DAL methods reach their
//! own tenant's schema and nothing else, transactions commit or leave no
//! trace, and a missing tenant comes back as the caller's own error type.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::Text;
use tenancy_core::{tenant_scoped, SchemaName, TenancyError, Tenant, TenantContext, TenantPool};
use tenancy_tests::{admin, items, pool, pool_of_one, rows_of, unique_schema, Schemas, ITEMS_DDL};

#[derive(Debug, thiserror::Error)]
enum DalError {
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// A DAL as applications write them: a struct holding its tenant.
#[derive(TenantContext)]
struct ItemsDal {
    tenant: Tenant,
    /// Counts how often a body actually ran.
    bodies_run: AtomicU32,
}

impl ItemsDal {
    fn new(pool: &TenantPool, schema: &SchemaName) -> Self {
        Self { tenant: pool.for_tenant(schema.clone()), bodies_run: AtomicU32::new(0) }
    }

    fn tag(&self) -> &str {
        self.tenant.schema().as_str()
    }

    #[tenant_scoped]
    fn insert(&self, body: &str) -> Result<i64, DalError> {
        self.bodies_run.fetch_add(1, Ordering::Relaxed);
        let id = diesel::insert_into(items::table)
            .values((items::tenant.eq(self.tag()), items::body.eq(body)))
            .returning(items::id)
            .get_result(conn)?;
        Ok(id)
    }

    #[tenant_scoped]
    fn tags(&self) -> Result<Vec<String>, DalError> {
        Ok(items::table.select(items::tenant).order(items::id).load(conn)?)
    }

    #[tenant_scoped]
    fn search_path(&self) -> Result<String, DalError> {
        Ok(diesel::select(diesel::dsl::sql::<Text>("current_setting('search_path')")).get_result(conn)?)
    }

    /// `return` leaves the function with its value, `?` with its error.
    #[tenant_scoped]
    fn first_body_longer_than(&self, len: usize) -> Result<Option<String>, DalError> {
        let bodies: Vec<String> = items::table.select(items::body).order(items::id).load(conn)?;
        for body in bodies {
            if body.len() > len {
                return Ok(Some(body));
            }
        }
        Ok(None)
    }

    #[tenant_scoped]
    fn query_missing_table(&self) -> Result<usize, DalError> {
        diesel::sql_query("SELECT * FROM no_such_table").execute(conn)?;
        Err(DalError::Refused("unreachable: the query above fails"))
    }

    /// Inserts every body, then refuses (rolling back) if one of them is "refuse".
    #[tenant_scoped(transaction)]
    fn insert_all(&self, bodies: &[&str]) -> Result<usize, DalError> {
        self.bodies_run.fetch_add(1, Ordering::Relaxed);
        for body in bodies {
            diesel::insert_into(items::table)
                .values((items::tenant.eq(self.tag()), items::body.eq(body)))
                .execute(conn)?;
            if *body == "refuse" {
                return Err(DalError::Refused("asked to refuse"));
            }
        }
        Ok(bodies.len())
    }

    /// Inserts a row, then fails on a missing table through `?`.
    #[tenant_scoped(transaction)]
    fn insert_then_fail_query(&self, body: &str) -> Result<(), DalError> {
        diesel::insert_into(items::table)
            .values((items::tenant.eq(self.tag()), items::body.eq(body)))
            .execute(conn)?;
        diesel::sql_query("SELECT * FROM no_such_table").execute(conn)?;
        Ok(())
    }

    /// Inserts a row, then panics.
    #[tenant_scoped(transaction)]
    fn insert_then_panic(&self, body: &str) -> Result<(), DalError> {
        diesel::insert_into(items::table)
            .values((items::tenant.eq(self.tag()), items::body.eq(body)))
            .execute(conn)?;
        panic!("the body panicked after inserting");
    }

    /// Commits through an early `return Ok`.
    #[tenant_scoped(transaction)]
    fn insert_and_return_early(&self, body: &str) -> Result<&'static str, DalError> {
        diesel::insert_into(items::table)
            .values((items::tenant.eq(self.tag()), items::body.eq(body)))
            .execute(conn)?;
        if !body.is_empty() {
            return Ok("returned early");
        }
        Ok("fell through")
    }

    #[tenant_scoped(transaction)]
    fn count_in_transaction(&self) -> Result<i64, DalError> {
        self.bodies_run.fetch_add(1, Ordering::Relaxed);
        Ok(items::table.count().get_result(conn)?)
    }
}

/// A repository whose scoped methods come with the trait.
trait ItemsRepo: TenantContext {
    #[tenant_scoped]
    fn count(&self) -> Result<i64, TenancyError> {
        Ok(items::table.count().get_result(conn)?)
    }
}

impl ItemsRepo for ItemsDal {}

#[tenant_scoped(ctx = tenant, conn = c)]
fn insert_tagged(tenant: &Tenant, body: &str) -> Result<(), TenancyError> {
    diesel::insert_into(items::table)
        .values((items::tenant.eq(tenant.schema().as_str()), items::body.eq(body)))
        .execute(c)?;
    Ok(())
}

#[tenant_scoped(ctx = dal, transaction)]
fn count_shared(dal: Arc<ItemsDal>) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

/// What really landed in `schema`, read around the library.
fn rows_in(schema: &SchemaName) -> Vec<(String, String)> {
    rows_of(&mut admin(), schema).into_iter().map(|r| (r.tenant, r.body)).collect()
}

fn bodies_in(schema: &SchemaName) -> Vec<String> {
    rows_in(schema).into_iter().map(|(_, body)| body).collect()
}

#[test]
fn dal_methods_read_and_write_only_their_tenants_schema() {
    let schemas = Schemas::create("ts_own", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool();
    let dal_a = ItemsDal::new(&pool, a);
    let dal_b = ItemsDal::new(&pool, b);

    dal_a.insert("a1").unwrap();
    dal_a.insert("a2").unwrap();
    dal_b.insert("b1").unwrap();

    assert_eq!(rows_in(a), [(a.to_string(), "a1".into()), (a.to_string(), "a2".into())]);
    assert_eq!(rows_in(b), [(b.to_string(), "b1".into())]);
    assert_eq!(dal_a.tags().unwrap(), [a.to_string(), a.to_string()]);
    assert_eq!(dal_b.tags().unwrap(), [b.to_string()]);
    assert_eq!(dal_a.search_path().unwrap().replace('"', ""), format!("{a}, pg_temp"));
    assert_eq!(dal_b.search_path().unwrap().replace('"', ""), format!("{b}, pg_temp"));
}

#[test]
fn two_handles_used_alternately_never_mix() {
    let schemas = Schemas::create("ts_alt", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    // One connection: every call switches it between the two tenants.
    let pool = pool_of_one();
    let dal_a = ItemsDal::new(&pool, a);
    let dal_b = ItemsDal::new(&pool, b);

    for i in 0..10 {
        dal_a.insert(&format!("a{i}")).unwrap();
        dal_b.insert(&format!("b{i}")).unwrap();
        dal_b.insert_all(&[&format!("bt{i}")]).unwrap();
        dal_a.insert_all(&[&format!("at{i}")]).unwrap();
        assert!(dal_a.tags().unwrap().iter().all(|t| t == a.as_str()));
        assert!(dal_b.tags().unwrap().iter().all(|t| t == b.as_str()));
    }

    assert_eq!(rows_in(a).len(), 20);
    assert_eq!(rows_in(b).len(), 20);
    assert!(rows_in(a).iter().all(|(tag, body)| tag == a.as_str() && body.starts_with('a')));
    assert!(rows_in(b).iter().all(|(tag, body)| tag == b.as_str() && body.starts_with('b')));
}

#[test]
fn transaction_commits_on_ok() {
    let schemas = Schemas::create("ts_commit", 1, ITEMS_DDL);
    let dal = ItemsDal::new(&pool(), schemas.first());

    assert_eq!(dal.insert_all(&["x", "y"]).unwrap(), 2);
    assert_eq!(dal.insert_and_return_early("z").unwrap(), "returned early");

    assert_eq!(bodies_in(schemas.first()), ["x", "y", "z"]);
}

#[test]
fn transaction_leaves_no_trace_on_err() {
    let schemas = Schemas::create("ts_err", 1, ITEMS_DDL);
    let dal = ItemsDal::new(&pool(), schemas.first());

    // `return Err(...)` after two inserts.
    assert!(matches!(dal.insert_all(&["kept?", "refuse"]), Err(DalError::Refused("asked to refuse"))));
    // `?` on a failed query after an insert.
    assert!(matches!(dal.insert_then_fail_query("kept?"), Err(DalError::Query(_))));

    assert_eq!(bodies_in(schemas.first()), Vec::<String>::new());
    // The connection went back clean: the next call works and commits.
    dal.insert_all(&["after"]).unwrap();
    assert_eq!(bodies_in(schemas.first()), ["after"]);
}

#[test]
fn transaction_leaves_no_trace_on_panic() {
    let schemas = Schemas::create("ts_panic", 1, ITEMS_DDL);
    let dal = ItemsDal::new(&pool_of_one(), schemas.first());

    let outcome = catch_unwind(AssertUnwindSafe(|| dal.insert_then_panic("kept?")));
    assert!(outcome.is_err(), "the panic must reach the caller");

    assert_eq!(bodies_in(schemas.first()), Vec::<String>::new());
    // The only connection is usable again and not stuck in a transaction.
    dal.insert_all(&["after"]).unwrap();
    assert_eq!(bodies_in(schemas.first()), ["after"]);
}

#[test]
fn missing_tenant_returns_the_callers_error_wrapping_tenant_not_found() {
    let missing = unique_schema("ts_missing");
    let dal = ItemsDal::new(&pool(), &missing);

    let not_found = |result: Result<_, DalError>| match result {
        Err(DalError::Tenancy(TenancyError::TenantNotFound { schema })) => schema == missing,
        _ => false,
    };
    assert!(not_found(dal.insert("never").map(|_| ())));
    assert!(not_found(dal.count_in_transaction().map(|_| ())));
    assert_eq!(dal.bodies_run.load(Ordering::Relaxed), 0, "no body may run without its tenant");

    let tenant = pool().for_tenant(missing.clone());
    assert!(matches!(insert_tagged(&tenant, "never"), Err(TenancyError::TenantNotFound { .. })));
    assert!(matches!(ItemsRepo::count(&dal), Err(TenancyError::TenantNotFound { .. })));
}

#[test]
fn return_and_question_mark_behave_as_written() {
    let schemas = Schemas::create("ts_flow", 1, ITEMS_DDL);
    let dal = ItemsDal::new(&pool(), schemas.first());
    dal.insert("ab").unwrap();
    dal.insert("abcd").unwrap();
    dal.insert("abcdef").unwrap();

    assert_eq!(dal.first_body_longer_than(3).unwrap().as_deref(), Some("abcd"));
    assert_eq!(dal.first_body_longer_than(10).unwrap(), None);
    match dal.query_missing_table() {
        Err(DalError::Query(diesel::result::Error::DatabaseError(_, info))) => {
            assert!(info.message().contains("no_such_table"), "{}", info.message())
        }
        other => panic!("expected the query's own error, got {other:?}"),
    }
    // The failed query did not poison the connection for the next borrower.
    assert_eq!(dal.tags().unwrap().len(), 3);
}

#[test]
fn free_functions_trait_defaults_and_shared_contexts_are_scoped_too() {
    let schemas = Schemas::create("ts_forms", 2, ITEMS_DDL);
    let (a, b) = schemas.pair();
    let pool = pool();

    insert_tagged(&pool.for_tenant(a.clone()), "free").unwrap();
    let dal_a = Arc::new(ItemsDal::new(&pool, a));
    let dal_b = ItemsDal::new(&pool, b);

    assert_eq!(dal_a.count().unwrap(), 1);
    assert_eq!(ItemsRepo::count(&dal_b).unwrap(), 0);
    assert_eq!(count_shared(Arc::clone(&dal_a)).unwrap(), 1);
    assert_eq!(rows_in(a), [(a.to_string(), "free".into())]);
    assert!(rows_in(b).is_empty());
}
