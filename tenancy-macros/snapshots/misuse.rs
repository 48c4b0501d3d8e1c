// Written:

#[tenant_scoped(transation, conn = tenant)]
pub async fn count(tenant: &Tenant) -> i64 {
    agents::table.count().get_result(conn).unwrap_or(0)
}

// Expanded:

::core::compile_error! {
    "unknown option `transation`: expected `transaction`, `ctx = <parameter>` or `conn = <name>`; did you mean `transaction`?"
}
::core::compile_error! {
    "`#[tenant_scoped]` cannot be used on an `async fn`: diesel connections are synchronous; make it a plain `fn` and call it from async code with `tokio::task::spawn_blocking` or similar"
}
::core::compile_error! {
    "`#[tenant_scoped]` needs a tenant context to check out connections from: a `self` receiver, or a parameter named with `ctx`, e.g. `#[tenant_scoped(ctx = tenant)]`"
}
::core::compile_error! {
    "`tenant` is already a parameter of this function; bind the connection to another name"
}
#[allow(
    unreachable_code,
    unused_variables,
    clippy::empty_loop,
    clippy::diverging_sub_expression
)]
pub async fn count(tenant: &Tenant) -> i64 {
    let tenant: &mut ::tenancy_core::diesel::PgConnection = loop {};
    agents::table.count().get_result(conn).unwrap_or(0)
}
