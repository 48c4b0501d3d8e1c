//! `schema!("acme")`: a tenant schema name checked when the macro expands,
//! so that a broken one is reported at the literal with the broken rule and
//! a name that would do.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use crate::schema_rules::{check, suggest};

/// Expands `$crate, "name"` (what `tenancy_core::schema!` passes on).
pub(crate) fn schema(input: TokenStream) -> TokenStream {
    let mut tokens = input.into_iter();
    let krate: TokenStream =
        tokens.by_ref().take_while(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == ',')).collect();
    let rest: TokenStream = tokens.collect();
    let literal = match syn::parse2::<syn::LitStr>(rest.clone()) {
        Ok(literal) => literal,
        Err(_) => {
            let span = rest.into_iter().next().map_or_else(Span::call_site, |t| t.span());
            return error(&krate, span, "`schema!` takes a string literal, as in `schema!(\"acme\")`; for names known only at run time, use `SchemaName::new` or `parse_schema`");
        }
    };
    let name = literal.value();
    match check(&name) {
        Ok(()) => quote! {{
            const TENANCY_SCHEMA: #krate::SchemaName = #krate::__private::schema_literal(#literal);
            TENANCY_SCHEMA
        }},
        Err(rule) => {
            let instead = match suggest(&name) {
                Some(valid) => format!("; write `schema!({valid:?})` instead"),
                None => String::new(),
            };
            error(&krate, literal.span(), &format!("invalid schema name {name:?}: {rule}{instead}"))
        }
    }
}

/// The error, in an expression of the macro's type (so that nothing else
/// is reported about it).
fn error(krate: &TokenStream, span: Span, message: &str) -> TokenStream {
    let error = quote_spanned!(span=> ::core::compile_error!(#message););
    quote! {{
        #error
        #krate::__private::schema_literal("_")
    }}
}
