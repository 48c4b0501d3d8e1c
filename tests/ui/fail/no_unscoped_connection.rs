use tenancy_core::TenantPool;

fn main() {
    let pool = TenantPool::connect("postgres://localhost/app").unwrap();
    let _raw = pool.get();
    let _inner = &pool.inner;
    let _pool = pool.pool;
}
