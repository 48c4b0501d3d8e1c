//! Isolation through the coordinator: each tenant sees its own tables only,
//! whichever worker holds them and whichever connection serves it.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use tenancy_core::citus::{move_tenant, TransferMode};
use tenancy_core::{provision, SchemaName, TenantPool};
use tenancy_tests::{current_schemas, unique_schema};

use crate::{text, worker_of, workers};

const V1: EmbeddedMigrations = embed_migrations!("migrations/citus_v1");

/// Two tenants on different workers, each with `rows` orders naming it.
fn two_tenants_apart(pool: &TenantPool) -> [SchemaName; 2] {
    let tenants = [unique_schema("iso"), unique_schema("iso")];
    let mut nodes = Vec::new();
    for (tenant, rows) in tenants.iter().zip([2, 3]) {
        nodes.push(worker_of(provision(pool, tenant, V1).unwrap().placement.as_ref().unwrap()));
        let mut conn = pool.tenant(tenant).unwrap();
        for _ in 0..rows {
            conn.batch_execute(&format!("INSERT INTO orders (tenant, amount) VALUES ('{tenant}', 1)"))
                .unwrap();
        }
    }
    if nodes[0] == nodes[1] {
        let other = workers(pool).into_iter().find(|w| *w != nodes[0]).unwrap();
        move_tenant(pool, &tenants[1], &other, TransferMode::BlockWrites).unwrap();
    }
    tenants
}

fn orders(conn: &mut PgConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM orders)")).get_result(conn).unwrap()
}

#[test]
fn each_tenant_sees_only_its_own_rows_on_one_pooled_connection() {
    let db = tenancy_tests::citus::database("citus_iso");
    let pool = TenantPool::builder().max_size(1).build(db.url()).unwrap();
    let [a, b] = two_tenants_apart(&pool);
    for _ in 0..3 {
        for (tenant, expected) in [(&a, 2), (&b, 3)] {
            let mut conn = pool.tenant(tenant).unwrap();
            assert_eq!(orders(&mut conn), expected, "{tenant}");
            assert_eq!(
                text(&mut conn, "SELECT string_agg(DISTINCT tenant, ',') AS t FROM orders"),
                tenant.as_str()
            );
            assert_eq!(current_schemas(&mut conn), [tenant.as_str()]);
        }
    }
    pool.transaction(&b, |conn| {
        assert_eq!(orders(conn), 3);
        Ok::<_, tenancy_core::TenancyError>(())
    })
    .unwrap();
}

#[test]
fn a_name_that_is_not_a_tenant_is_not_served_through_the_coordinator() {
    let db = tenancy_tests::citus::database("citus_iso_missing");
    let pool = TenantPool::builder().max_size(2).build(db.url()).unwrap();
    let error = pool.tenant(&unique_schema("nobody")).and_then(|mut c| {
        c.batch_execute("SELECT 1")?;
        Ok(())
    });
    assert!(error.unwrap_err().is_tenant_not_found());
}

#[test]
fn citus_refuses_a_join_across_tenants_on_different_workers() {
    let db = tenancy_tests::citus::database("citus_iso_join");
    let pool = TenantPool::builder().max_size(2).build(db.url()).unwrap();
    let [a, b] = two_tenants_apart(&pool);
    let mut admin = db.connect().unwrap();
    let join =
        format!("SELECT count(*) FROM {}.orders x JOIN {}.orders y ON x.id = y.id", a.quoted(), b.quoted());
    assert!(admin.batch_execute(&join).is_err(), "a cross-tenant join is refused");
}
