#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing
# (PostgreSQL server binaries, libpq headers, PgBouncer), then builds and runs
# every test, doc test, example and the quick benchmarks. PostgreSQL itself is
# found or started by the tests (tenancy-devdb): DATABASE_URL, else the server
# on 127.0.0.1:5432, else a throwaway cluster that is removed afterwards.
# Citus, for the tests on a Citus cluster (which start their own coordinator
# and workers), is built and installed when missing: from the release source
# tarball TENANCY_CITUS_TARBALL names, else from the source downloaded from
# GitHub (scripts/citus-build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have_server_binaries() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_server_binaries || missing+=(postgresql)
[ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> Citus"
./scripts/citus-build.sh ${TENANCY_CITUS_TARBALL:+"$TENANCY_CITUS_TARBALL"}

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Every feature (`serde` is off in the workspace build).
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

echo "==> tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --quiet 2>&1 | tee "$log"
# tenancy-core again with the `serde` and `tokio` features (off in the workspace build):
# its unit and doc tests, and the serde tests that only exist with it.
cargo test -p tenancy-core --features serde,tokio --quiet 2>&1 | tee -a "$log"

echo "==> examples (each checks what it shows, and fails if a tenant sees another's data)"
cargo run --quiet --example quickstart
cargo run --quiet --example saas
cargo run --quiet --example axum_service
deployment="ci_deployment_$$"
printf 'add ship the release\ndone 1\nlist\n' | TENANCY_SCHEMA="$deployment" cargo run --quiet --example per_deployment
TENANCY_SCHEMA="$deployment" cargo run --quiet --example per_deployment -- --decommission
echo "==> examples on a Citus coordinator (a throwaway cluster: a coordinator and two workers)"
cargo run --quiet -p tenancy-devdb --example citus -- \
    sh -c 'cargo run --quiet --example quickstart && cargo run --quiet --example saas'

echo "==> packaging (the public API listing, a crates.io dry run)"
cargo run --quiet -p public-api
# A clean checkout (CI's) is packaged exactly as committed. Uncommitted local
# changes are packaged as they are, so that the suite can run before a commit.
allow_dirty=()
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    echo "(uncommitted changes: packaging the working tree, --allow-dirty)"
    allow_dirty=(--allow-dirty)
fi
cargo publish --workspace --dry-run "${allow_dirty[@]}"

echo "==> quick benchmarks (ratios against plain diesel in the same run; figures in BENCHMARKS.md)"
cargo bench -p tenancy-tests --bench scoping -- --quick
cargo bench -p tenancy-tests --bench fleet -- --quick
cargo bench -p tenancy-tests --bench retirement -- --quick
cargo bench -p tenancy-tests --bench guard -- --quick
cargo bench -p tenancy-tests --bench citus -- --quick
cargo bench -p tenancy-cli --bench migrate_noop -- --quick
cargo bench -p tenancy-tests --bench async_api -- --quick

# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
