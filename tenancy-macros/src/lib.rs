//! `#[tenant_scoped]`: see `tenancy_core::tenant_scoped`.
use proc_macro::TokenStream;

/// Placeholder until the attribute lands.
#[proc_macro_attribute]
pub fn tenant_scoped(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
