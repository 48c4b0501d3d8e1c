//! The `#[tenant_scoped]` attribute and `#[derive(TenantContext)]` of
//! `tenancy-core`. Use them through `tenancy_core`: the code they generate
//! names `tenancy_core` items, so this crate is not meant to be used on its own.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod attr;
mod context;
mod expand;
mod item;
mod schema;
mod schema_rules;
#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;

/// Gives a function a `conn: &mut TenantConnection` that resolves table names in
/// one tenant's schema, and in no other.
///
/// The connection is checked out through the function's tenant context, a
/// value implementing `tenancy_core::TenantContext`: `self` by default, or
/// the parameter named with `ctx = ...`. The body can reach the database
/// only through that connection; there is no way to an unscoped one.
///
/// ```no_run
/// use diesel::prelude::*;
/// use tenancy_core::{tenant_scoped, Tenant, TenancyError, TenantContext, TenantPool, SchemaName};
///
/// # diesel::table! { agents (id) { id -> BigInt, name -> Text, team -> BigInt } }
/// #[derive(Debug, thiserror::Error)]
/// pub enum DalError {
///     #[error(transparent)]
///     Tenancy(#[from] TenancyError),
///     #[error(transparent)]
///     Query(#[from] diesel::result::Error),
/// }
///
/// pub struct AgentsDal {
///     tenant: Tenant,
/// }
///
/// impl TenantContext for AgentsDal {
///     fn tenant_pool(&self) -> &TenantPool {
///         self.tenant.tenant_pool()
///     }
///     fn tenant_schema(&self) -> &SchemaName {
///         self.tenant.tenant_schema()
///     }
/// }
///
/// impl AgentsDal {
///     /// Every agent of this tenant.
///     #[tenant_scoped]
///     pub fn names(&self) -> Result<Vec<String>, DalError> {
///         Ok(agents::table.select(agents::name).order(agents::id).load(conn)?)
///     }
///
///     /// Moves every agent of one team to another, all or nothing.
///     #[tenant_scoped(transaction)]
///     pub fn move_team(&self, from: i64, to: i64) -> Result<usize, DalError> {
///         let moved = diesel::update(agents::table.filter(agents::team.eq(from)))
///             .set(agents::team.eq(to))
///             .execute(conn)?;
///         if moved == 0 {
///             // An `Err` rolls the transaction back, like a panic would.
///             return Err(DalError::Query(diesel::result::Error::NotFound));
///         }
///         Ok(moved)
///     }
/// }
///
/// /// A free function: the context is a parameter, and the connection is `c`.
/// #[tenant_scoped(ctx = tenant, conn = c)]
/// pub fn count(tenant: &Tenant) -> Result<i64, TenancyError> {
///     Ok(agents::table.count().get_result(c)?)
/// }
/// ```
///
/// # Options
///
/// * `transaction`: run the body in one transaction scoped to the tenant
///   (`TenantContext::tenant_transaction`): it commits when the body returns
///   `Ok`, and rolls back when it returns `Err` or panics.
/// * `ctx = <parameter>`: the parameter that is the tenant context, for free
///   functions or when `self` is not the context (`ctx = self` is the
///   default when there is a receiver). Any type implementing
///   `TenantContext` works, behind any reference or smart pointer:
///   `&Tenant`, `Tenant`, `Arc<AgentsDal>`, `&impl TenantContext`...
/// * `conn = <name>`: the name the connection is bound to (default `conn`).
///
/// # The function
///
/// It must return a `Result` whose error type implements
/// `From<tenancy_core::TenancyError>`: a failed checkout (the tenant's schema
/// does not exist, the pool timed out...) is converted with `From` and
/// returned before the body runs. Inside the body, `return` and `?` behave
/// as written.
///
/// It works on inherent methods, trait impl methods, trait methods with a
/// default body and free functions. The signature is kept exactly as
/// written (visibility, attributes, doc comments, generics, lifetimes,
/// where-clauses, `impl Trait` parameters and return types).
///
/// In transaction mode the body is a closure run while the context is
/// borrowed, so the body may use the context by shared reference only.
///
/// # Composing
///
/// The context may be anything implementing `tenancy_core::Scope`: a tenant
/// context checks a connection out, and a `&mut TenantConnection` the caller
/// holds (such as its own `conn`) is used as it is, inside its transaction
/// (where `transaction` makes a savepoint). A parameter `scope: impl Scope`
/// makes a function callable both ways: `count(&dal)` or `count(&mut *conn)`.
///
/// # What it becomes
///
/// ```text
/// // #[tenant_scoped]
/// pub fn names(&self) -> Result<Vec<String>, DalError> {
///     ::tenancy_core::__private::scoped(
///         ::tenancy_core::__private::enter_context(&self), // the checkout, before the body
///         |conn: &mut TenantConnection| {
///             Ok(agents::table.select(agents::name).load(conn)?)
///         },
///     ) // then the end of the scope: the connection goes back
/// }
///
/// // #[tenant_scoped(transaction)]: `begin_context` instead, and the end
/// // commits on `Ok` and rolls back on `Err` or a panic.
/// ```
///
/// # Compile errors
///
/// Misuse is reported at the offending token: no tenant context, a `ctx`
/// that names no parameter, a return type that is not a `Result`, an error
/// type without `From<TenancyError>`, a context type that does not
/// implement `TenantContext`, `async fn` (diesel is synchronous), `const
/// fn`, an unknown or repeated option, and a `conn` binding that would hide
/// a parameter.
#[proc_macro_attribute]
pub fn tenant_scoped(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::tenant_scoped(args.into(), item.into()).into()
}

/// Makes a struct that holds its tenant a tenant context: `TenantContext`
/// for the struct, answered by the field that holds the tenant (a
/// `tenancy_core::Tenant`, or any other tenant context).
///
/// The field is the one marked `#[tenant]`, else the only field, else the
/// field named `tenant`.
///
/// ```no_run
/// use tenancy_core::{tenant_scoped, Tenant, TenancyError, TenantContext};
///
/// #[derive(TenantContext)]
/// pub struct NotesDal {
///     tenant: Tenant,
/// }
///
/// #[derive(TenantContext)]
/// pub struct ReportsDal {
///     #[tenant]
///     scope: Tenant,
///     page_size: usize,
/// }
///
/// impl NotesDal {
///     #[tenant_scoped]
///     pub fn count(&self) -> Result<i64, TenancyError> {
///         # let _ = conn;
///         Ok(0)
///     }
/// }
/// ```
#[proc_macro_derive(TenantContext, attributes(tenant))]
pub fn derive_tenant_context(input: TokenStream) -> TokenStream {
    context::derive(input.into()).into()
}

/// What `tenancy_core::schema!` expands through: checks the literal when the
/// macro expands. Not for direct use.
#[doc(hidden)]
#[proc_macro]
pub fn __schema(input: TokenStream) -> TokenStream {
    schema::schema(input.into()).into()
}
