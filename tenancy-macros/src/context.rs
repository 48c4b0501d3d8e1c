//! `#[derive(TenantContext)]`: a struct that holds its tenant (a `Tenant`,
//! or any other tenant context) in one field is a tenant context itself.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Member};

const HOLDS_THE_TENANT: &str = "holds the tenant (a `tenancy_core::Tenant`, or any other tenant context)";

/// The derive's whole work: the `impl`, or the error at the offending token.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    match tenant_field(&input) {
        Ok(field) => expand(&input, &field),
        Err(error) => error.to_compile_error(),
    }
}

/// The field that holds the tenant: the one marked `#[tenant]`, else the
/// only field, else the field named `tenant`.
fn tenant_field(input: &DeriveInput) -> syn::Result<(Member, Span)> {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span,
                format!("`#[derive(TenantContext)]` goes on a struct with a field that {HOLDS_THE_TENANT}; an enum has no one tenant"),
            ))
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                format!("`#[derive(TenantContext)]` goes on a struct with a field that {HOLDS_THE_TENANT}"),
            ))
        }
    };
    let members: Vec<(Member, &syn::Field)> = match fields {
        Fields::Named(named) => {
            named.named.iter().filter_map(|f| f.ident.clone().map(|i| (Member::Named(i), f))).collect()
        }
        Fields::Unnamed(unnamed) => {
            unnamed.unnamed.iter().enumerate().map(|(i, f)| (Member::from(i), f)).collect()
        }
        Fields::Unit => Vec::new(),
    };
    let marked: Vec<&(Member, &syn::Field)> =
        members.iter().filter(|(_, f)| f.attrs.iter().any(|a| a.path().is_ident("tenant"))).collect();
    match marked.as_slice() {
        [(member, field)] => return Ok((member.clone(), field.ty.span())),
        [_, (_, second), ..] => {
            return Err(syn::Error::new(
                second.span(),
                "only one field can be marked `#[tenant]`: the one that holds the tenant",
            ))
        }
        [] => {}
    }
    if let [(member, field)] = members.as_slice() {
        return Ok((member.clone(), field.ty.span()));
    }
    if let Some((member, field)) =
        members.iter().find(|(m, _)| matches!(m, Member::Named(i) if i == "tenant"))
    {
        return Ok((member.clone(), field.ty.span()));
    }
    let span = if members.is_empty() { input.ident.span() } else { fields.span() };
    Err(syn::Error::new(
        span,
        format!(
            "`#[derive(TenantContext)]` needs to know which field {HOLDS_THE_TENANT}: mark it `#[tenant]`, or name it `tenant`"
        ),
    ))
}

fn expand(input: &DeriveInput, (member, ty_span): &(Member, Span)) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let field = member.to_token_stream();
    // Spanned at the field's type: a type that is not a tenant context is
    // reported there, by `TenantContext`'s own diagnostic.
    let pool = quote_spanned!(*ty_span=> ::tenancy_core::TenantContext::tenant_pool(&self.#field));
    let schema = quote_spanned!(*ty_span=> ::tenancy_core::TenantContext::tenant_schema(&self.#field));
    quote! {
        impl #impl_generics ::tenancy_core::TenantContext for #name #ty_generics #where_clause {
            fn tenant_pool(&self) -> &::tenancy_core::TenantPool {
                #pool
            }
            fn tenant_schema(&self) -> &::tenancy_core::SchemaName {
                #schema
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(tokens: TokenStream) -> String {
        derive(tokens).to_string()
    }

    #[test]
    fn the_tenant_field_is_found_or_asked_for() {
        let out = derive(quote!(
            struct Dal {
                tenant: Tenant,
                cache: u8,
            }
        ))
        .to_string();
        assert!(out.contains("self . tenant"), "{out}");
        let out = derive(quote!(
            struct Dal {
                #[tenant]
                inner: Tenant,
                other: Tenant,
            }
        ))
        .to_string();
        assert!(out.contains("self . inner"), "{out}");
        let out = derive(quote!(
            struct Dal(Tenant);
        ))
        .to_string();
        assert!(out.contains("self . 0"), "{out}");
        assert!(error(quote!(
            struct Dal {
                a: Tenant,
                b: Tenant,
            }
        ))
        .contains("mark it `#[tenant]`"));
        assert!(error(quote!(
            struct Dal;
        ))
        .contains("mark it `#[tenant]`"));
        assert!(error(quote!(
            enum Dal {
                A,
            }
        ))
        .contains("an enum has no one tenant"));
        assert!(error(quote!(
            struct Dal {
                #[tenant]
                a: Tenant,
                #[tenant]
                b: Tenant,
            }
        ))
        .contains("only one field"));
    }
}
