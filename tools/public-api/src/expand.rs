//! The crate's own item-making macros, expanded the way the compiler would,
//! so that what they declare is listed like everything else: `setters!`
//! (builder methods) and `forward_context!` (`TenantContext` for references
//! and smart pointers). Any other macro invocation stays a blind spot, as
//! the listing's header says.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{parse_quote, Attribute, Ident, ImplItem, Item, Token, Type};

/// One `$(#[meta])* name(Type) => field;` entry of `setters!`.
struct Setter {
    attrs: Vec<Attribute>,
    name: Ident,
    ty: Type,
}

impl Parse for Setter {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        let content;
        syn::parenthesized!(content in input);
        let ty: Type = content.parse()?;
        input.parse::<Token![=>]>()?;
        input.parse::<Ident>()?;
        input.parse::<Token![;]>()?;
        Ok(Self { attrs, name, ty })
    }
}

struct Setters(Vec<Setter>);

impl Parse for Setters {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut all = Vec::new();
        while !input.is_empty() {
            all.push(input.parse()?);
        }
        Ok(Self(all))
    }
}

/// Replaces the invocations of the crate's own macros in `items` with what they expand to.
pub fn expand(items: Vec<Item>) -> Result<Vec<Item>, String> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Macro(mac) if mac.mac.path.is_ident("forward_context") => {
                let wrappers = mac
                    .mac
                    .parse_body_with(Punctuated::<Type, Token![,]>::parse_terminated)
                    .map_err(|e| format!("forward_context!: {e}"))?;
                for wrapper in wrappers {
                    out.push(parse_quote! {
                        impl<C: TenantContext + ?Sized> TenantContext for #wrapper {}
                    });
                }
            }
            Item::Impl(mut imp) => {
                let mut members = Vec::with_capacity(imp.items.len());
                for member in imp.items {
                    match member {
                        ImplItem::Macro(mac) if mac.mac.path.is_ident("setters") => {
                            let setters: Setters =
                                mac.mac.parse_body().map_err(|e| format!("setters!: {e}"))?;
                            for Setter { attrs, name, ty } in setters.0 {
                                members.push(ImplItem::Fn(parse_quote! {
                                    #(#attrs)*
                                    pub fn #name(self, value: #ty) -> Self { self }
                                }));
                            }
                        }
                        other => members.push(other),
                    }
                }
                imp.items = members;
                out.push(Item::Impl(imp));
            }
            other => out.push(other),
        }
    }
    Ok(out)
}
