//! The annotated function, parsed no further than the attribute needs.
//!
//! The body is kept as raw tokens: it is never looked into, so a syntax error
//! there is reported once, by the compiler, at the user's own token (the
//! same idea as tracing-attributes' `MaybeItemFn`).

use proc_macro2::TokenStream;
use quote::{ToTokens, TokenStreamExt};
use syn::parse::{Parse, ParseStream};
use syn::{braced, token, Attribute, FnArg, Pat, Signature, Token, Visibility};

/// A free function, an inherent or trait impl method, or a trait method with
/// or without a default body.
#[derive(Clone)]
pub(crate) struct ScopedFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) body: Body,
}

/// What follows the signature.
#[derive(Clone)]
pub(crate) enum Body {
    /// `{ ... }`: inner attributes, then the statements as written.
    Block { brace: token::Brace, inner_attrs: Vec<Attribute>, stmts: TokenStream },
    /// `;`: a trait method without a default body.
    Missing(Token![;]),
}

impl Parse for ScopedFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let body = if input.peek(Token![;]) {
            Body::Missing(input.parse()?)
        } else {
            let content;
            let brace = braced!(content in input);
            let inner_attrs = content.call(Attribute::parse_inner)?;
            Body::Block { brace, inner_attrs, stmts: content.parse()? }
        };
        Ok(Self { attrs, vis, sig, body })
    }
}

impl ScopedFn {
    /// Outer attributes, visibility and signature, exactly as written.
    pub(crate) fn head(&self) -> TokenStream {
        let mut tokens = TokenStream::new();
        tokens.append_all(&self.attrs);
        self.vis.to_tokens(&mut tokens);
        self.sig.to_tokens(&mut tokens);
        tokens
    }

    /// Makes the parameter bound to `name` a mutable binding, when it is a
    /// parameter of its own (not inside a pattern); says whether it is.
    pub(crate) fn make_mutable(&mut self, name: &str) -> bool {
        for input in &mut self.sig.inputs {
            if let FnArg::Typed(typed) = input {
                if let Pat::Ident(binding) = &mut *typed.pat {
                    if binding.ident == name && binding.by_ref.is_none() && binding.subpat.is_none() {
                        binding.mutability.get_or_insert_with(Default::default);
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The function with its statements replaced by `new_body(statements)`;
    /// the braces and inner attributes stay. Unchanged if it has no body.
    pub(crate) fn with_body(&self, new_body: impl FnOnce(&TokenStream) -> TokenStream) -> TokenStream {
        let mut tokens = self.head();
        match &self.body {
            Body::Block { brace, inner_attrs, stmts } => {
                brace.surround(&mut tokens, |tokens| {
                    tokens.append_all(inner_attrs.iter());
                    tokens.extend(new_body(stmts));
                });
            }
            Body::Missing(semi) => semi.to_tokens(&mut tokens),
        }
        tokens
    }
}
