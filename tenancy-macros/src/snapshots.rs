//! What annotated functions become, pretty-printed and compared with
//! insta snapshots in `src/snapshots/`. After an intended change, run
//! `INSTA_UPDATE=always cargo test -p tenancy-macros` (or `cargo insta
//! review`) and read the diff.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::tenant_scoped;

/// Expands `written`, a function carrying `#[tenant_scoped(...)]`; `wrap`
/// puts it into its `impl` or `trait` for printing.
fn expansion(written: TokenStream, wrap: fn(TokenStream) -> TokenStream) -> String {
    let mut item: syn::ItemFn = syn::parse2(written.clone()).unwrap();
    let position = item.attrs.iter().position(|a| a.path().is_ident("tenant_scoped")).unwrap();
    let args = match item.attrs.remove(position).meta {
        syn::Meta::List(list) => list.tokens,
        _ => TokenStream::new(),
    };
    let input = pretty(wrap(written));
    let output = pretty(wrap(tenant_scoped(args, quote!(#item))));
    format!("// Written:\n\n{input}\n// Expanded:\n\n{output}")
}

fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("expansion is not valid Rust ({e}):\n{tokens}"),
    }
}

fn in_impl(tokens: TokenStream) -> TokenStream {
    quote!(impl AgentsDal { #tokens })
}

fn in_trait(tokens: TokenStream) -> TokenStream {
    quote!(trait AgentsRepo: TenantContext { #tokens })
}

fn free(tokens: TokenStream) -> TokenStream {
    tokens
}

/// Compares the expansion of `written` (see [`expansion`]) with the snapshot `name`.
fn check(name: &str, written: TokenStream, wrap: fn(TokenStream) -> TokenStream) {
    insta::assert_snapshot!(name, expansion(written, wrap));
}

#[test]
fn method_checks_out_a_connection_through_self() {
    check(
        "method",
        quote! {
            /// Creates an agent.
            #[must_use = "the agent may not have been created"]
            #[tenant_scoped]
            pub fn create(&self, new: &NewAgent) -> Result<Agent, DalError> {
                Ok(diesel::insert_into(agents::table).values(new).get_result(conn)?)
            }
        },
        in_impl,
    );
}

#[test]
fn transaction_runs_the_body_in_a_tenant_transaction() {
    check(
        "transaction",
        quote! {
            #[tenant_scoped(transaction)]
            pub fn move_all<'a>(&'a self, from: i64, to: impl Into<i64>) -> Result<impl Iterator<Item = &'a str>, DalError>
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
        },
        in_impl,
    );
}

#[test]
fn free_function_takes_its_context_and_connection_names() {
    check(
        "free_function",
        quote! {
            #[tenant_scoped(ctx = tenant, conn = c)]
            pub fn count<C: TenantContext + ?Sized>(tenant: &C) -> Result<i64, TenancyError> {
                Ok(agents::table.count().get_result(c)?)
            }
        },
        free,
    );
}

#[test]
fn a_scope_parameter_is_reborrowed_for_the_body() {
    check(
        "scope_parameter",
        quote! {
            #[tenant_scoped(ctx = scope, transaction)]
            pub fn rename(scope: impl Scope, id: i64, name: &str) -> Result<usize, TenancyError> {
                Ok(diesel::update(agents::table.find(id)).set(agents::name.eq(name)).execute(conn)?)
            }
        },
        free,
    );
}

#[test]
fn returning_the_connection_is_refused_at_the_return_type() {
    let out = tenant_scoped(
        quote!(ctx = tenant),
        quote!(
            fn leak(tenant: &Tenant) -> Result<&mut TenantConnection, TenancyError> {
                Ok(conn)
            }
        ),
    )
    .to_string();
    assert!(out.contains("cannot return its connection"), "{out}");
}

#[test]
fn trait_default_method_is_scoped_like_any_method() {
    check(
        "trait_default_method",
        quote! {
            #[tenant_scoped]
            fn names(&self) -> QueryResultOf<Vec<String>> {
                agents::table.select(agents::name).load(conn).map_err(Into::into)
            }
        },
        in_trait,
    );
}

#[test]
fn misuse_keeps_the_function_and_reports_every_error() {
    check(
        "misuse",
        quote! {
            #[tenant_scoped(transation, conn = tenant)]
            pub async fn count(tenant: &Tenant) -> i64 {
                agents::table.count().get_result(conn).unwrap_or(0)
            }
        },
        free,
    );
}

#[test]
fn not_a_function_is_reported_and_kept() {
    let out = tenant_scoped(
        quote!(),
        quote!(
            struct AgentsDal;
        ),
    )
    .to_string();
    assert!(out.contains("compile_error"), "{out}");
    assert!(out.ends_with("struct AgentsDal ;"), "{out}");
}
