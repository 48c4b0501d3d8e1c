//! Checks the annotated function against the attribute's rules, then
//! generates the scoped body.
//!
//! Misuse is reported at the offending token, together with the original
//! function (given a placeholder connection, so that its body type-checks
//! and the one real error is all the user sees).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, Pat, ReturnType, Type};

use crate::attr::Args;
use crate::item::{Body, ScopedFn};

/// The attribute's whole work: `args` are the tokens inside
/// `#[tenant_scoped(...)]`, `item` the annotated function.
pub(crate) fn tenant_scoped(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ScopedFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return not_a_function(error, item),
    };
    let (args, mut errors) = Args::parse(args);
    match Plan::new(&func, &args) {
        Ok(plan) if errors.is_none() => plan.expand(),
        Ok(_) => fallback(&func, &args, errors),
        Err(plan_errors) => {
            match (&mut errors, plan_errors) {
                (Some(errors), Some(plan_errors)) => errors.combine(plan_errors),
                (None, plan_errors) => errors = plan_errors,
                (Some(_), None) => {}
            }
            fallback(&func, &args, errors)
        }
    }
}

/// The errors, and the function as written with `conn` bound to a value of
/// the right type that is never produced: the body still type-checks, so no
/// follow-up errors bury the real ones, and IDEs keep their completions.
fn fallback(func: &ScopedFn, args: &Args, errors: Option<syn::Error>) -> TokenStream {
    let conn = args.conn.clone().unwrap_or_else(|| Ident::new("conn", Span::call_site()));
    let mut tokens = errors.map(|e| e.to_compile_error()).unwrap_or_default();
    let body = func.with_body(|stmts| {
        quote! {
            let #conn: &mut ::tenancy_core::TenantConnection = loop {};
            #stmts
        }
    });
    tokens.extend(quote! {
        #[allow(unreachable_code, unused_variables, clippy::empty_loop, clippy::diverging_sub_expression)]
        #body
    });
    tokens
}

/// The item could not be read as a function. If it is one (with a syntax
/// error the compiler will report), it is passed through untouched;
/// otherwise the attribute is on the wrong kind of item.
fn not_a_function(error: syn::Error, item: TokenStream) -> TokenStream {
    let is_fn =
        item.clone().into_iter().any(|tree| matches!(&tree, proc_macro2::TokenTree::Ident(i) if i == "fn"));
    if is_fn {
        return item;
    }
    let span = item.clone().into_iter().next().map_or_else(|| error.span(), |tree| tree.span());
    let error = syn::Error::new(
        span,
        "`#[tenant_scoped]` goes on a function or method that takes a tenant context and returns a `Result`",
    )
    .to_compile_error();
    quote!(#error #item)
}

/// Where the tenant context comes from: the token that names it in the
/// signature (`self`, or the parameter's identifier).
struct Context(TokenStream, Span);

/// A checked function, ready to expand.
struct Plan<'a> {
    func: &'a ScopedFn,
    context: Context,
    conn: Ident,
    transaction: bool,
    return_type: &'a Type,
}

impl<'a> Plan<'a> {
    /// Checks every rule, reporting all broken ones together.
    fn new(func: &'a ScopedFn, args: &Args) -> Result<Self, Option<syn::Error>> {
        let mut errors = Errors::default();
        let sig = &func.sig;

        if let Some(token) = &sig.asyncness {
            errors.push(syn::Error::new(
                token.span,
                "`#[tenant_scoped]` cannot be used on an `async fn`: diesel connections are synchronous; make it a plain `fn` and call it from async code with `tokio::task::spawn_blocking` or similar",
            ));
        }
        if let Some(token) = &sig.constness {
            errors.push(syn::Error::new(
                token.span,
                "`#[tenant_scoped]` cannot be used on a `const fn`: it checks out a database connection at run time; remove `const`",
            ));
        }
        if let Body::Missing(semi) = &func.body {
            errors.push(syn::Error::new(
                semi.span,
                "`#[tenant_scoped]` needs a function body to scope: put it on a method that has one (a trait method's default body, or the method in an `impl`)",
            ));
        }

        let return_type = match &sig.output {
            ReturnType::Default => {
                errors.push(syn::Error::new(
                    sig.paren_token.span.close(),
                    "`#[tenant_scoped]` functions must return a `Result`, since checking out the tenant's connection can fail: add `-> Result<T, E>`, with an error type `E` that implements `From<tenancy_core::TenancyError>`",
                ));
                None
            }
            ReturnType::Type(_, ty) if !could_be_result(ty) => {
                errors.push(syn::Error::new(
                    ty.span(),
                    "`#[tenant_scoped]` functions must return a `Result`, since checking out the tenant's connection can fail: return `Result<T, E>`, with an error type `E` that implements `From<tenancy_core::TenancyError>`",
                ));
                None
            }
            ReturnType::Type(_, ty) => {
                if let Some(connection) = names_a_connection(ty) {
                    errors.push(syn::Error::new(
                        connection.span(),
                        format!(
                            "a `#[tenant_scoped]` function cannot return its connection: `{connection}` goes back to the pool (and its transaction ends) when the function returns; return what the body read instead, or let the caller hold the connection and pass it in as the context (`ctx = scope` with `scope: &mut TenantConnection`)"
                        ),
                    ));
                }
                Some(&**ty)
            }
        };

        let bindings = parameter_bindings(sig);
        let receiver = sig.receiver().map(|r| r.self_token);
        let context = match (&args.ctx, receiver) {
            (Some(name), Some(self_token)) if name == "self" => {
                Some(Context(self_token.to_token_stream(), self_token.span))
            }
            (Some(name), None) if name == "self" => {
                errors.push(syn::Error::new(
                    name.span(),
                    "`ctx = self`, but this function has no `self` parameter; name one of its parameters instead",
                ));
                None
            }
            (Some(name), _) => match bindings.iter().find(|b| *b == name) {
                Some(binding) => Some(Context(binding.to_token_stream(), binding.span())),
                None => {
                    errors.push(syn::Error::new(
                        name.span(),
                        missing_parameter(name, &bindings, receiver.is_some()),
                    ));
                    None
                }
            },
            (None, Some(self_token)) => Some(Context(self_token.to_token_stream(), self_token.span)),
            // A malformed `ctx = ...` has been reported already.
            (None, None) if args.ctx_in_error => None,
            (None, None) => {
                let example = bindings.first().map_or_else(|| String::from("tenant"), ToString::to_string);
                errors.push(syn::Error::new(
                    sig.ident.span(),
                    format!(
                        "`#[tenant_scoped]` needs a tenant context to check out connections from: a `self` receiver, or a parameter named with `ctx`, e.g. `#[tenant_scoped(ctx = {example})]`"
                    ),
                ));
                None
            }
        };

        let conn = match &args.conn {
            Some(conn) => {
                if bindings.iter().any(|b| b == conn) {
                    errors.push(syn::Error::new(
                        conn.span(),
                        format!("`{conn}` is already a parameter of this function; bind the connection to another name"),
                    ));
                }
                conn.clone()
            }
            None => {
                let conn = Ident::new("conn", Span::call_site());
                if let Some(clash) = bindings.iter().find(|b| **b == conn) {
                    errors.push(syn::Error::new(
                        clash.span(),
                        "`#[tenant_scoped]` binds the tenant connection to `conn`, which would hide this parameter; rename the parameter, or bind the connection to another name with `#[tenant_scoped(conn = c)]`",
                    ));
                }
                conn
            }
        };

        match (errors.0, context, return_type) {
            (None, Some(context), Some(return_type)) => {
                Ok(Self { func, context, conn, transaction: args.transaction.is_some(), return_type })
            }
            // Without errors here, the attribute's own errors explain what is missing.
            (errors, _, _) => Err(errors),
        }
    }

    fn expand(&self) -> TokenStream {
        let Context(context, context_span) = &self.context;
        let conn = &self.conn;
        let return_span = self.return_type.span();
        let mut func = self.func.clone();
        // `self` is a tenant context; a parameter may also be a connection
        // the caller holds (`&mut TenantConnection`, `impl Scope`), which is
        // reborrowed for the body, hence `&mut` (of a mutable binding).
        let (enter, begin) = if context.to_string() == "self" {
            (quote!(enter_context), quote!(begin_context))
        } else {
            (quote!(enter), quote!(begin))
        };
        let context = if context.to_string() == "self" {
            quote_spanned!(*context_span=> &#context)
        } else if func.make_mutable(&context.to_string()) {
            quote_spanned!(*context_span=> &mut #context)
        } else {
            quote_spanned!(*context_span=> &mut &#context)
        };
        let enter = if self.transaction {
            quote_spanned!(*context_span=> ::tenancy_core::__private::#begin(#context, ::tenancy_core::TransactionOptions::new()))
        } else {
            quote_spanned!(*context_span=> ::tenancy_core::__private::#enter(#context))
        };
        let fake_return_edge = fake_return_edge(self.return_type);
        func.with_body(|stmts| {
            // The scope is entered before the body runs, so the body may use
            // the context (even `&mut self`) as it likes; the body is a
            // closure, so that every way out of it (`return`, `?`, its
            // value) goes through the end of the scope.
            let body = quote! {
                |#[allow(unused_variables)] #conn: &mut ::tenancy_core::TenantConnection| {
                    #fake_return_edge
                    #stmts
                }
            };
            // Spanned as a whole at the return type, which is what a
            // non-`Result` or a missing `From` impl is about.
            quote_spanned!(return_span=> ::tenancy_core::__private::scoped(#enter, #body))
        })
    }
}

/// An unreachable `return` of the declared type at the top of the
/// transaction closure: it fixes the closure's return type before the body is
/// checked, so `?` converts into the function's error type and type errors
/// point at the user's code (as in tracing-attributes).
fn fake_return_edge(return_type: &Type) -> TokenStream {
    let mut erased = return_type.clone();
    ImplTraitEraser.visit_type_mut(&mut erased);
    let value = Ident::new("fake_return", Span::mixed_site());
    quote_spanned! {return_type.span()=>
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
            let #value: #erased = loop {};
            return #value;
        }
    }
}

/// Replaces `impl Trait` with `_`, which a `let` type annotation accepts.
struct ImplTraitEraser;

impl VisitMut for ImplTraitEraser {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty =
                Type::Infer(syn::TypeInfer { underscore_token: syn::Token![_](impl_trait.impl_token.span) });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

/// The connection type a return type names, if any: the scoped connection
/// cannot outlive the function.
fn names_a_connection(ty: &Type) -> Option<Ident> {
    fn find(tokens: TokenStream) -> Option<Ident> {
        tokens.into_iter().find_map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident)
                if ["PgConnection", "TenantConnection", "SharedConnection", "PooledConnection"]
                    .iter()
                    .any(|name| ident == name) =>
            {
                Some(ident)
            }
            proc_macro2::TokenTree::Group(group) => find(group.stream()),
            _ => None,
        })
    }
    find(ty.to_token_stream())
}

/// Types that are certainly not a `Result`. A path may name one (`Result`,
/// `QueryResult`, `anyhow::Result`, an alias); the type checker decides those.
fn could_be_result(ty: &Type) -> bool {
    match ty {
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        Type::Paren(inner) => could_be_result(&inner.elem),
        Type::Group(inner) => could_be_result(&inner.elem),
        _ => false,
    }
}

/// Every name a parameter binds (`self` excluded), in order.
fn parameter_bindings(sig: &syn::Signature) -> Vec<Ident> {
    let mut names = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input {
            collect_bindings(&typed.pat, &mut names);
        }
    }
    names
}

fn collect_bindings(pat: &Pat, names: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            names.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                collect_bindings(sub, names);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|p| collect_bindings(p, names)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|p| collect_bindings(p, names)),
        Pat::Slice(p) => p.elems.iter().for_each(|p| collect_bindings(p, names)),
        Pat::Or(p) => p.cases.iter().take(1).for_each(|p| collect_bindings(p, names)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect_bindings(&f.pat, names)),
        Pat::Reference(p) => collect_bindings(&p.pat, names),
        Pat::Paren(p) => collect_bindings(&p.pat, names),
        Pat::Type(p) => collect_bindings(&p.pat, names),
        _ => {}
    }
}

fn missing_parameter(name: &Ident, bindings: &[Ident], has_self: bool) -> String {
    let mut known: Vec<String> = bindings.iter().map(|b| format!("`{b}`")).collect();
    if has_self {
        known.insert(0, String::from("`self`"));
    }
    if known.is_empty() {
        format!("`ctx = {name}`, but this function has no parameters; add the tenant context as a parameter")
    } else {
        format!(
            "`ctx = {name}`, but this function has no parameter `{name}`; `ctx` names the parameter that is the tenant context: {}",
            known.join(", ")
        )
    }
}

/// Errors gathered while checking, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}
