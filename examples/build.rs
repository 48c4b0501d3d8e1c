//! `embed_migrations!` reads the migration directories when the crate is
//! compiled, and cargo does not know it: without these lines, a migration
//! added later is not embedded until some Rust file changes, and a fleet run
//! reports every tenant current.

fn main() {
    for dir in ["quickstart/migrations", "per_deployment/migrations", "saas/migrations"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
