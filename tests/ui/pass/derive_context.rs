use tenancy_core::diesel::prelude::*;
use tenancy_core::{tenant_scoped, TenancyError, Tenant, TenantContext};
use tenancy_tests::items;

/// The field named `tenant`.
#[derive(TenantContext)]
struct Named {
    tenant: Tenant,
    page_size: usize,
}

/// The field marked `#[tenant]`, holding any tenant context.
#[derive(TenantContext)]
struct Marked<'a> {
    label: &'static str,
    #[tenant]
    inner: &'a Named,
}

/// The only field.
#[derive(TenantContext)]
struct Wrapper(std::sync::Arc<Named>);

/// Generic over its context.
#[derive(TenantContext)]
struct Generic<C: TenantContext> {
    #[tenant]
    ctx: C,
}

impl Named {
    #[tenant_scoped]
    fn count(&self) -> Result<i64, TenancyError> {
        let _ = self.page_size;
        Ok(items::table.count().get_result(conn)?)
    }
}

#[tenant_scoped(ctx = context)]
fn count_in(context: &impl TenantContext) -> Result<i64, TenancyError> {
    Ok(items::table.count().get_result(conn)?)
}

fn main() {
    fn is_context<C: TenantContext>(_: &C) {}
    let _ = |named: Named| {
        let marked = Marked { label: "x", inner: &named };
        is_context(&marked);
        let _ = marked.label;
        let _ = count_in(&marked);
        let wrapper = Wrapper(std::sync::Arc::new(named));
        is_context(&wrapper);
        is_context(&Generic { ctx: wrapper });
    };
}
