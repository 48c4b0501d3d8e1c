//! A throwaway Citus cluster: a coordinator and workers on free loopback
//! ports, each a [`Cluster`] started from the local PostgreSQL binaries with
//! Citus preloaded, stopped and removed when dropped (or, if the process
//! ends without dropping it, by each node's watchdog).
//!
//! Citus must be installed for that PostgreSQL (`citus.so` in its library
//! directory); `scripts/test.sh` installs it. Databases made with
//! [`DevDatabase::create_database`] on the coordinator exist on every node,
//! carry the extension everywhere, and know their workers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use diesel::PgConnection;

use crate::{
    find_bindir, replace_database, replace_host_port, Cluster, DevDatabase, DevDbError, Origin, TempDatabase,
};

/// Settings of every node: Citus preloaded, logical decoding for
/// `citus_schema_move`'s logical transfer mode, room for Citus's own
/// connections and two-phase commits.
const NODE_SETTINGS: &[&str] = &[
    "shared_preload_libraries=citus",
    "wal_level=logical",
    "max_prepared_transactions=200",
    "max_wal_senders=20",
    "max_replication_slots=20",
    "shared_buffers=64MB",
    "citus.max_client_connections=200",
];

/// A coordinator and its workers, all on 127.0.0.1.
#[derive(Debug)]
pub struct CitusCluster {
    // Dropped first: the coordinator, then the workers.
    coordinator: DevDatabase,
    workers: Vec<Cluster>,
}

impl CitusCluster {
    /// Starts a coordinator and `workers` workers (the nodes start at
    /// once), creates the extension on each, and registers the coordinator
    /// and the workers in the coordinator's `pg_dist_node`.
    pub fn start(workers: usize) -> Result<Self, DevDbError> {
        let bindir = find_bindir().ok_or(DevDbError::NoBinaries)?;
        check_installed(&bindir)?;
        let started: Vec<Result<Cluster, DevDbError>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..=workers).map(|_| s.spawn(|| Cluster::start_with(NODE_SETTINGS))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(DevDbError::Cluster(String::from("a node's start panicked"))))
                })
                .collect()
        });
        // Any node that did start is stopped again (by its drop) if another failed.
        let mut nodes = started.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter();
        let coordinator = nodes.next().ok_or_else(|| DevDbError::Cluster(String::from("no coordinator")))?;
        let workers: Vec<Cluster> = nodes.collect();
        let url = coordinator.url("postgres");
        for node in std::iter::once(&coordinator).chain(&workers) {
            execute(&node.url("postgres"), "CREATE EXTENSION IF NOT EXISTS citus")?;
        }
        let nodes = Nodes {
            coordinator: (String::from("127.0.0.1"), coordinator.port()),
            workers: workers.iter().map(|w| (String::from("127.0.0.1"), w.port())).collect(),
        };
        register(&url, &nodes)?;
        Ok(Self {
            coordinator: DevDatabase { url, origin: Origin::Throwaway, cluster: Some(coordinator) },
            workers,
        })
    }

    /// The coordinator: its URL (database `postgres`) and
    /// [`create_database`](DevDatabase::create_database), which makes
    /// databases on every node.
    pub fn coordinator(&self) -> &DevDatabase {
        &self.coordinator
    }

    /// The coordinator's URL (database `postgres`).
    pub fn url(&self) -> &str {
        self.coordinator.url()
    }

    /// The workers' ports (on 127.0.0.1).
    pub fn worker_ports(&self) -> Vec<u16> {
        self.workers.iter().map(Cluster::port).collect()
    }

    /// A fresh database on every node, like
    /// [`DevDatabase::create_unique_database`].
    pub fn create_unique_database(&self, prefix: &str) -> Result<TempDatabase, DevDbError> {
        self.coordinator.create_unique_database(prefix)
    }
}

/// The process-wide Citus cluster (a coordinator and two workers), started
/// on first use; the nodes' watchdogs stop them once the process ends.
pub fn shared_cluster() -> Result<&'static CitusCluster, DevDbError> {
    static CLUSTER: OnceLock<Result<CitusCluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| CitusCluster::start(2).map_err(|e| e.to_string())) {
        Ok(cluster) => Ok(cluster),
        Err(e) => Err(DevDbError::Cluster(e.clone())),
    }
}

/// Whether Citus is installed for the PostgreSQL binaries in `bindir`.
pub fn check_installed(bindir: &Path) -> Result<(), DevDbError> {
    // Where `initdb` really is: PATH may hold symbolic links to it.
    let real = std::fs::canonicalize(bindir.join("initdb"))
        .ok()
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| bindir.to_path_buf());
    let libdir = Command::new(real.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_else(|| real.join("../lib"));
    if libdir.join("citus.so").is_file() {
        Ok(())
    } else {
        Err(DevDbError::CitusNotInstalled { bindir: bindir.to_owned(), libdir })
    }
}

/// A Citus cluster's nodes, as the coordinator's `pg_dist_node` lists them.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    coordinator: (String, u16),
    workers: Vec<(String, u16)>,
}

/// The nodes of the Citus cluster `conn`'s server coordinates, or `None`
/// when it is plain PostgreSQL (no `citus` extension in `conn`'s database,
/// or no workers).
pub(crate) fn nodes(conn: &mut PgConnection) -> Result<Option<Nodes>, DevDbError> {
    #[derive(QueryableByName)]
    struct Node {
        #[diesel(sql_type = Text)]
        nodename: String,
        #[diesel(sql_type = Integer)]
        nodeport: i32,
        #[diesel(sql_type = Integer)]
        groupid: i32,
    }
    let db = |e: diesel::result::Error| DevDbError::Database(e.to_string());
    let has_citus: Vec<Node> = diesel::sql_query(
        "SELECT extname AS nodename, 0 AS nodeport, 0 AS groupid FROM pg_catalog.pg_extension WHERE extname = 'citus'",
    )
    .load(conn)
    .map_err(db)?;
    if has_citus.is_empty() {
        return Ok(None);
    }
    let rows: Vec<Node> = diesel::sql_query(
        "SELECT nodename::text AS nodename, nodeport, groupid FROM pg_catalog.pg_dist_node \
         WHERE noderole = 'primary' ORDER BY groupid, nodeid",
    )
    .load(conn)
    .map_err(db)?;
    let port = |p: i32| u16::try_from(p).map_err(|_| DevDbError::Database(format!("node port {p}")));
    let mut coordinator = None;
    let mut workers = Vec::new();
    for row in rows {
        if row.groupid == 0 {
            coordinator = Some((row.nodename, port(row.nodeport)?));
        } else {
            workers.push((row.nodename, port(row.nodeport)?));
        }
    }
    match coordinator {
        Some(coordinator) if !workers.is_empty() => Ok(Some(Nodes { coordinator, workers })),
        _ => Ok(None),
    }
}

/// Makes the database `database` (already created on the coordinator) a
/// Citus database: the same database on every worker with the extension,
/// the extension on the coordinator, and the nodes registered.
pub(crate) fn spread(admin_url: &str, nodes: &Nodes, database: &mut TempDatabase) -> Result<(), DevDbError> {
    let name = database.name.clone();
    for (host, port) in &nodes.workers {
        let worker_admin = replace_database(&replace_host_port(admin_url, host, *port), "postgres");
        let mut conn = PgConnection::establish(&worker_admin)
            .map_err(|e| DevDbError::Database(format!("{worker_admin}: {e}")))?;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .and_then(|()| conn.batch_execute(&format!("CREATE DATABASE \"{name}\"")))
            .map_err(|e| DevDbError::Database(e.to_string()))?;
        database.workers.push(worker_admin.clone());
        execute(&replace_database(&worker_admin, &name), "CREATE EXTENSION IF NOT EXISTS citus")?;
    }
    execute(&database.url, "CREATE EXTENSION IF NOT EXISTS citus")?;
    // Registering opens connections to the workers, which a loaded machine
    // sometimes fails ("failure on connection marked as essential"); both
    // calls are idempotent, so a failed attempt is simply made again.
    let mut attempt = 1;
    loop {
        match register(&database.url, nodes) {
            Err(_) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
            }
            done => return done,
        }
    }
}

/// Registers the coordinator and the workers in the `pg_dist_node` of the
/// database at `url`.
fn register(url: &str, nodes: &Nodes) -> Result<(), DevDbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| DevDbError::Database(format!("{url}: {e}")))?;
    let (host, port) = &nodes.coordinator;
    let db = |e: diesel::result::Error| DevDbError::Database(format!("registering Citus nodes: {e}"));
    diesel::sql_query("SELECT pg_catalog.citus_set_coordinator_host($1, $2)")
        .bind::<Text, _>(host)
        .bind::<Integer, _>(i32::from(*port))
        .execute(&mut conn)
        .map_err(db)?;
    for (host, port) in &nodes.workers {
        diesel::sql_query("SELECT pg_catalog.citus_add_node($1, $2)")
            .bind::<Text, _>(host)
            .bind::<Integer, _>(i32::from(*port))
            .execute(&mut conn)
            .map_err(db)?;
    }
    Ok(())
}

fn execute(url: &str, sql: &str) -> Result<(), DevDbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| DevDbError::Database(format!("{url}: {e}")))?;
    conn.batch_execute(sql).map_err(|e| DevDbError::Database(format!("{sql}: {e}")))
}
