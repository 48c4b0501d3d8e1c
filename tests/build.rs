//! `embed_migrations!` (in the tests and benchmarks) reads `migrations/`
//! when the crate is compiled; this makes cargo recompile when it changes.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
