//! Compile-time guarantees of `#[tenant_scoped]`, `SchemaName` and
//! `TenantPool`: what compiles, and the errors users get when they misuse
//! them. Regenerate the `.stderr` files with `TRYBUILD=overwrite` and read
//! every one of them: each is help a user will get.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
