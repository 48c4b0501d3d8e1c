use tenancy_core::SchemaName;

fn main() {
    let _a = SchemaName("TenantA");
    let _b = SchemaName { 0: "TenantA" };
    let _c: SchemaName = "TenantA".into();
    let _d: SchemaName = String::from("TenantA").into();
}
