//! The Citus cluster of the `citus` test binary: a coordinator and two
//! workers on loopback, started once per test binary, and databases on it
//! that exist on every node, carry the extension and know their workers.

use tenancy_devdb::citus::CitusCluster;
use tenancy_devdb::TempDatabase;

/// The cluster, started on first use. Fails the test, saying how to
/// install Citus, when it is not installed: these tests never skip.
pub fn cluster() -> &'static CitusCluster {
    tenancy_devdb::citus::shared_cluster()
        .unwrap_or_else(|e| panic!("no Citus cluster for the Citus tests: {e}"))
}

/// A database of the test's own on the cluster (`{prefix}_{pid}_{n}`),
/// dropped on every node when the guard is.
pub fn database(prefix: &str) -> TempDatabase {
    cluster()
        .create_unique_database(prefix)
        .unwrap_or_else(|e| panic!("creating a Citus database {prefix}_*: {e}"))
}
