use tenancy_core::schema;

fn main() {
    let _uppercase = schema!("TenantA");
    let _punctuation = schema!("Acme-Corp");
    let _digit_first = schema!("42shop");
    let _too_long = schema!("a_schema_name_that_is_longer_than_sixty_three_bytes_and_would_be_cut");
    let _reserved = schema!("pg_tenant");
    let _public = schema!("public");
    let _not_a_string = schema!(42);
}
