//! The attribute's arguments: `transaction`, `ctx = <parameter>`, `conn = <name>`.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// What `#[tenant_scoped(...)]` was asked to do.
#[derive(Debug)]
pub(crate) struct Args {
    /// `transaction`: run the body in a tenant transaction. Holds the option's span.
    pub(crate) transaction: Option<Span>,
    /// `ctx = <parameter>`: the parameter that is the tenant context (else `self`).
    pub(crate) ctx: Option<Ident>,
    /// `conn = <name>`: the name the body's connection is bound to (else `conn`).
    pub(crate) conn: Option<Ident>,
    /// An error was reported about `ctx` (or something that may have meant
    /// it), so a missing context needs no error of its own.
    pub(crate) ctx_in_error: bool,
}

const EXPECTED: &str = "expected `transaction`, `ctx = <parameter>` or `conn = <name>`";
const OPTIONS: [&str; 3] = ["transaction", "ctx", "conn"];

/// One comma-separated option as written: a name, and what follows `=` if anything.
struct RawOption {
    name: Ident,
    value: Option<TokenTree>,
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = match input.parse::<TokenTree>()? {
            TokenTree::Ident(name) => name,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    format!("unexpected token in `#[tenant_scoped(...)]`; {EXPECTED}"),
                ))
            }
        };
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse::<TokenTree>()?)
        } else {
            None
        };
        Ok(Self { name, value })
    }
}

fn example(name: &Ident) -> &'static str {
    if name == "ctx" {
        "tenant"
    } else {
        "c"
    }
}

impl Args {
    /// Parses the tokens between the attribute's parentheses: the options
    /// understood, and an error for every bad one, each at its own token.
    pub(crate) fn parse(tokens: TokenStream) -> (Self, Option<syn::Error>) {
        let mut args = Args { transaction: None, ctx: None, conn: None, ctx_in_error: false };
        let options = match Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(options) => options,
            Err(error) => {
                args.ctx_in_error = true;
                return (args, Some(error));
            }
        };
        let mut errors: Vec<syn::Error> = Vec::new();
        for RawOption { name, value } in options {
            let key = name.to_string();
            let errors_before = errors.len();
            let repeated = || syn::Error::new(name.span(), format!("`{key}` is given more than once"));
            let value = match (key.as_str(), value) {
                (_, None) => None,
                ("transaction", Some(value)) => {
                    errors.push(syn::Error::new(
                        value.span(),
                        "`transaction` takes no value: write `#[tenant_scoped(transaction)]`",
                    ));
                    continue;
                }
                (_, Some(TokenTree::Ident(value))) => Some(value),
                ("ctx" | "conn", Some(value)) => {
                    errors.push(syn::Error::new(
                        value.span(),
                        format!(
                            "expected a name after `{key} =`, as in `#[tenant_scoped({key} = {})]`",
                            example(&name)
                        ),
                    ));
                    continue;
                }
                (_, Some(_)) => None,
            };
            match (key.as_str(), value) {
                ("transaction", _) if args.transaction.is_some() => errors.push(repeated()),
                ("transaction", _) => args.transaction = Some(name.span()),
                ("ctx" | "conn", None) => errors.push(syn::Error::new(
                    name.span(),
                    format!("`{key}` needs a name: `#[tenant_scoped({key} = {})]`", example(&name)),
                )),
                ("ctx", Some(_)) if args.ctx.is_some() => errors.push(repeated()),
                ("ctx", Some(value)) => args.ctx = Some(value),
                ("conn", Some(_)) if args.conn.is_some() => errors.push(repeated()),
                ("conn", Some(value)) if value == "self" => errors.push(syn::Error::new(
                    value.span(),
                    "the connection cannot be bound to `self`; choose another name, e.g. `conn = c`",
                )),
                ("conn", Some(value)) => args.conn = Some(value),
                (other, _) => {
                    let hint = match closest_option(other) {
                        Some(option) => format!("; did you mean `{option}`?"),
                        None => String::new(),
                    };
                    errors.push(syn::Error::new(
                        name.span(),
                        format!("unknown option `{other}`: {EXPECTED}{hint}"),
                    ));
                }
            }
            if errors.len() > errors_before && (key == "ctx" || closest_option(&key) == Some("ctx")) {
                args.ctx_in_error = true;
            }
        }
        let errors = errors.into_iter().reduce(|mut all, e| {
            all.combine(e);
            all
        });
        (args, errors)
    }
}

/// The known option nearest to a misspelt one, if it is close enough to be a typo.
fn closest_option(word: &str) -> Option<&'static str> {
    OPTIONS
        .iter()
        .map(|option| (edit_distance(word, option), *option))
        .filter(|(distance, option)| *distance <= (option.len() / 3).max(2))
        .min()
        .map(|(_, option)| option)
}

/// Levenshtein distance between two short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(tokens: TokenStream) -> Vec<String> {
        match Args::parse(tokens) {
            (args, None) => panic!("expected errors, parsed {args:?}"),
            (_, Some(e)) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn parse(tokens: TokenStream) -> Args {
        match Args::parse(tokens) {
            (args, None) => args,
            (_, Some(e)) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn parses_every_option() {
        let args = parse(quote!(transaction, ctx = tenant, conn = c));
        assert!(args.transaction.is_some());
        assert_eq!(args.ctx.unwrap(), "tenant");
        assert_eq!(args.conn.unwrap(), "c");

        let args = parse(quote!());
        assert!(
            args.transaction.is_none() && args.ctx.is_none() && args.conn.is_none() && !args.ctx_in_error
        );

        let args = parse(quote!(ctx = self,));
        assert_eq!(args.ctx.unwrap(), "self");
    }

    #[test]
    fn reports_every_bad_option_at_once() {
        let errors = errors(quote!(transation, ctx = a, ctx = b, transaction, transaction, bogus));
        assert_eq!(
            errors,
            [
                "unknown option `transation`: expected `transaction`, `ctx = <parameter>` or `conn = <name>`; did you mean `transaction`?",
                "`ctx` is given more than once",
                "`transaction` is given more than once",
                "unknown option `bogus`: expected `transaction`, `ctx = <parameter>` or `conn = <name>`",
            ]
        );
    }

    #[test]
    fn rejects_malformed_values() {
        assert_eq!(errors(quote!(ctx)), ["`ctx` needs a name: `#[tenant_scoped(ctx = tenant)]`"]);
        assert_eq!(
            errors(quote!(transaction = yes)),
            ["`transaction` takes no value: write `#[tenant_scoped(transaction)]`"]
        );
        assert_eq!(
            errors(quote!(conn = "c")),
            ["expected a name after `conn =`, as in `#[tenant_scoped(conn = c)]`"]
        );
        assert_eq!(
            errors(quote!(conn = self)),
            ["the connection cannot be bound to `self`; choose another name, e.g. `conn = c`"]
        );
        assert_eq!(
            errors(quote!("transaction")),
            ["unexpected token in `#[tenant_scoped(...)]`; expected `transaction`, `ctx = <parameter>` or `conn = <name>`"]
        );
    }

    #[test]
    fn suggests_only_near_misses() {
        assert_eq!(closest_option("transactoin"), Some("transaction"));
        assert_eq!(closest_option("con"), Some("conn"));
        assert_eq!(closest_option("cxt"), Some("ctx"));
        assert_eq!(closest_option("isolation"), None);
    }
}
