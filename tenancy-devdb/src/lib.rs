//! A PostgreSQL for development, tests, examples and benchmarks, found or
//! started without any set-up:
//!
//! 1. `DATABASE_URL`, when set;
//! 2. else the server on `127.0.0.1:5432`, when one answers;
//! 3. else a throwaway cluster started from the local PostgreSQL binaries
//!    (on `PATH`, via `pg_config --bindir`, or under
//!    `/usr/lib/postgresql/*/bin`) in a temporary directory on a free port,
//!    stopped and removed when dropped, or, if the process ends without
//!    dropping it, by a watchdog that notices the process is gone.
//!
//! When run as root, the throwaway cluster runs as the `postgres` user
//! (initdb refuses root).
//!
//! [`citus::CitusCluster`] starts a Citus cluster (a coordinator and workers)
//! the same way, and [`DevDatabase::create_database`] on a Citus coordinator
//! makes the database on every node.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

pub mod citus;
pub mod pgbouncer;

/// What went wrong while finding or starting PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevDbError {
    /// No PostgreSQL server binaries on this machine.
    #[error(
        "no PostgreSQL server is reachable (DATABASE_URL is unset and nothing answers on 127.0.0.1:5432) and no PostgreSQL binaries were found to start one (looked on PATH, in `pg_config --bindir` and under /usr/lib/postgresql/*/bin); install them (Debian: apt-get install postgresql) or set DATABASE_URL"
    )]
    NoBinaries,
    /// `DATABASE_URL` is set but does not accept connections.
    #[error("DATABASE_URL={url} is not reachable: {reason}")]
    Unreachable {
        /// The URL (as given).
        url: String,
        /// libpq's reason.
        reason: String,
    },
    /// A step of starting the throwaway cluster failed.
    #[error("could not start a throwaway PostgreSQL cluster: {0}")]
    Cluster(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Database(String),
    /// A Citus cluster was asked for, but the extension is not installed
    /// for the local PostgreSQL.
    #[error(
        "Citus is not installed for the PostgreSQL in {bindir} (no citus.so in {libdir}); scripts/test.sh installs it (from $TENANCY_CITUS_TARBALL, else from the Citus release source), or run scripts/citus-build.sh TARBALL"
    )]
    CitusNotInstalled {
        /// Where the PostgreSQL binaries are.
        bindir: PathBuf,
        /// Where `citus.so` was looked for.
        libdir: PathBuf,
    },
}

/// Where the PostgreSQL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `DATABASE_URL`.
    Environment,
    /// The server on 127.0.0.1:5432.
    LocalServer,
    /// A throwaway cluster started by this process.
    Throwaway,
}

/// A reachable PostgreSQL.
#[derive(Debug)]
pub struct DevDatabase {
    url: String,
    origin: Origin,
    cluster: Option<Cluster>,
}

impl DevDatabase {
    /// Finds a server or starts a throwaway one (see the crate docs).
    pub fn find_or_start() -> Result<Self, DevDbError> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.trim().is_empty() {
                PgConnection::establish(&url)
                    .map_err(|e| DevDbError::Unreachable { url: url.clone(), reason: e.to_string() })?;
                return Ok(Self { url, origin: Origin::Environment, cluster: None });
            }
        }
        let local = "postgres://postgres@127.0.0.1:5432/postgres";
        let addr = SocketAddr::from(([127, 0, 0, 1], 5432));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            && PgConnection::establish(local).is_ok()
        {
            return Ok(Self { url: local.to_owned(), origin: Origin::LocalServer, cluster: None });
        }
        Self::throwaway()
    }

    /// Always starts a throwaway cluster of this process's own.
    pub fn throwaway() -> Result<Self, DevDbError> {
        let cluster = Cluster::start()?;
        Ok(Self { url: cluster.url("postgres"), origin: Origin::Throwaway, cluster: Some(cluster) })
    }

    /// A connection URL (to the `postgres` database, or `DATABASE_URL`'s).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where this server came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The throwaway cluster, when this process started one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Creates a fresh database named `name` (dropping any leftover of that
    /// name first) and returns a guard that drops it again.
    ///
    /// On a Citus coordinator (the `citus` extension in the server's own
    /// database, with workers in `pg_dist_node`), the database is made on
    /// every node, since Citus does not propagate `CREATE DATABASE`: on each
    /// worker and on the coordinator, with the extension in each, and the
    /// new database's coordinator knows its workers. The guard drops it on
    /// every node.
    ///
    /// `name` is 1 to 63 characters of `[a-z0-9_]`: PostgreSQL would
    /// truncate a longer one, and two long names could meet.
    pub fn create_database(&self, name: &str) -> Result<TempDatabase, DevDbError> {
        if name.is_empty()
            || name.len() > MAX_DATABASE_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(DevDbError::Database(format!(
                "database name {name:?} must be 1 to {MAX_DATABASE_NAME_LEN} characters of [a-z0-9_]"
            )));
        }
        let mut conn = PgConnection::establish(&self.url).map_err(|e| DevDbError::Database(e.to_string()))?;
        // Two messages: DROP DATABASE refuses to run inside the implicit
        // transaction of a multi-statement message.
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .and_then(|()| conn.batch_execute(&format!("CREATE DATABASE \"{name}\"")))
            .map_err(|e| DevDbError::Database(e.to_string()))?;
        let mut database = TempDatabase {
            admin_url: self.url.clone(),
            url: replace_database(&self.url, name),
            name: name.to_owned(),
            workers: Vec::new(),
        };
        if let Some(nodes) = citus::nodes(&mut conn)? {
            // On failure, the guard drops whatever was made so far.
            citus::spread(&self.url, &nodes, &mut database)?;
        }
        Ok(database)
    }

    /// Creates a fresh database named `{prefix}_{pid}_{n}`, unique to this
    /// process (`n` counts up), like [`create_database`](Self::create_database).
    ///
    /// For a test or a benchmark that needs a database of its own: one that
    /// works on every schema of a database, or cuts its sessions.
    pub fn create_unique_database(&self, prefix: &str) -> Result<TempDatabase, DevDbError> {
        static N: AtomicU32 = AtomicU32::new(0);
        self.create_database(&format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

/// The longest name PostgreSQL keeps as written (`NAMEDATALEN - 1`).
const MAX_DATABASE_NAME_LEN: usize = 63;

/// The process-wide development database, found or started on first use.
///
/// A throwaway cluster started here lives until the process ends; its
/// watchdog then stops it and removes its directory.
pub fn shared() -> Result<&'static DevDatabase, DevDbError> {
    static DB: OnceLock<Result<DevDatabase, String>> = OnceLock::new();
    match DB.get_or_init(|| DevDatabase::find_or_start().map_err(|e| e.to_string())) {
        Ok(db) => Ok(db),
        Err(e) => Err(DevDbError::Cluster(e.clone())),
    }
}

/// A database that is dropped (with `FORCE`) when this guard is; made by
/// [`DevDatabase::create_database`] and
/// [`DevDatabase::create_unique_database`].
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    url: String,
    name: String,
    /// Admin URLs of the Citus workers holding a database of this name.
    workers: Vec<String>,
}

impl TempDatabase {
    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to it, outside any pool.
    pub fn connect(&self) -> Result<PgConnection, DevDbError> {
        PgConnection::establish(&self.url).map_err(|e| DevDbError::Database(e.to_string()))
    }

    /// URLs of this database on each Citus worker (none on plain PostgreSQL).
    pub fn worker_urls(&self) -> Vec<String> {
        self.workers.iter().map(|admin| replace_database(admin, &self.name)).collect()
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        for admin in std::iter::once(&self.admin_url).chain(&self.workers) {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ = conn.batch_execute(&drop);
            }
        }
    }
}

/// Replaces the database name of a `postgres://` URL.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Replaces the host and port of a `postgres://` URL (user, password,
/// database and parameters are kept).
pub fn replace_host_port(url: &str, host: &str, port: u16) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    format!(
        "{}{}{host}:{port}{}",
        &url[..authority_start],
        userinfo.map(|u| format!("{u}@")).unwrap_or_default(),
        &url[authority_end..]
    )
}

/// A throwaway PostgreSQL cluster in a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    /// Server settings beyond the defaults, as `name=value` (`-c` options).
    settings: Vec<String>,
    /// The watchdog shell, stopped on drop so that nothing outlives the cluster.
    watchdog: Option<u32>,
}

impl Cluster {
    /// initdb + start on a free loopback port.
    pub fn start() -> Result<Self, DevDbError> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra server settings (`name=value`,
    /// passed as `-c` options after the defaults, so they override them),
    /// e.g. `shared_preload_libraries=citus`. Values may not contain spaces
    /// or quotes.
    pub fn start_with(settings: &[&str]) -> Result<Self, DevDbError> {
        if let Some(bad) =
            settings.iter().find(|s| !s.contains('=') || s.contains([' ', '"', '\'', '\\', '\n']))
        {
            return Err(DevDbError::Cluster(format!(
                "server setting {bad:?} must be name=value without spaces or quotes"
            )));
        }
        let bindir = find_bindir().ok_or(DevDbError::NoBinaries)?;
        let run_as = if is_root() { Some(postgres_user()?) } else { None };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tenancy-pg-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| DevDbError::Cluster(format!("create {}: {e}", dir.display())))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| DevDbError::Cluster(format!("chown {}: {e}", dir.display())))?;
        }
        let mut cluster = Cluster {
            bindir,
            dir,
            port: free_port()?,
            run_as,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            watchdog: None,
        };
        cluster.initdb()?;
        cluster.launch()?;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            // HOME too: libpq inside the server (Citus's connections between
            // nodes) reads ~/.postgresql, which root's HOME would deny.
            cmd.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self) -> Result<(), DevDbError> {
        let out = self
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", "-D"])
            .arg(self.data())
            .output()
            .map_err(|e| DevDbError::Cluster(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(DevDbError::Cluster(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts the server with a watchdog that stops it and removes the
    /// directory once this process is gone.
    fn launch(&mut self) -> Result<(), DevDbError> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let script = format!(
            r#"
            "{pg_ctl}" -D "{data}" -l "{dir}/log" -w -t 60 -o "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB{extra}" start >/dev/null || exit 1
            (
              while [ -e /proc/{parent} ] && [ -d "{data}" ]; do sleep 0.5; done
              "{pg_ctl}" -D "{data}" -m immediate -w stop >/dev/null 2>&1
              rm -rf "{dir}"
            ) </dev/null >/dev/null 2>&1 &
            echo $!
            "#,
            pg_ctl = pg_ctl.display(),
            data = self.data().display(),
            dir = self.dir.display(),
            port = self.port,
            parent = std::process::id(),
            extra = self.extra_options(),
        );
        let status = {
            let mut cmd = Command::new("sh");
            if let Some((uid, gid)) = self.run_as {
                use std::os::unix::process::CommandExt;
                cmd.uid(uid).gid(gid).env("HOME", &self.dir);
            }
            cmd.arg("-c")
                .arg(&script)
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.output().map_err(|e| DevDbError::Cluster(format!("pg_ctl start: {e}")))?
        };
        if !status.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(DevDbError::Cluster(format!("pg_ctl start failed: {log}")));
        }
        self.watchdog = String::from_utf8_lossy(&status.stdout).trim().parse().ok();
        Ok(())
    }

    /// The extra settings as ` -c name=value` options.
    fn extra_options(&self) -> String {
        self.settings.iter().map(|s| format!(" -c {s}")).collect()
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub fn stop(&self) -> Result<(), DevDbError> {
        let out = self
            .command("pg_ctl")
            .args(["-m", "fast", "-w", "stop", "-D"])
            .arg(self.data())
            .output()
            .map_err(|e| DevDbError::Cluster(format!("pg_ctl stop: {e}")))?;
        if !out.status.success() {
            return Err(DevDbError::Cluster(format!(
                "pg_ctl stop: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts a stopped server again, on the same port.
    pub fn start_again(&self) -> Result<(), DevDbError> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300{}",
                self.port,
                self.dir.display(),
                self.extra_options(),
            ))
            .args(["start", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| DevDbError::Cluster(format!("pg_ctl start: {e}")))?;
        if !out.status.success() {
            return Err(DevDbError::Cluster(format!(
                "pg_ctl start: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Stops and starts the server: every session is cut.
    pub fn restart(&self) -> Result<(), DevDbError> {
        self.stop()?;
        self.start_again()
    }

    /// The directory holding the cluster (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where PostgreSQL's binaries were found.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The watchdog first (and its `sleep`), so that nothing of the
        // cluster is left running once the drop returns.
        if let Some(pid) = self.watchdog.take() {
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            let _ = Command::new("kill")
                .arg(pid.to_string())
                .args(children.split_whitespace())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds the directory of `initdb`, `pg_ctl` and `postgres`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d)) {
            return Some(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> Result<u16, DevDbError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| DevDbError::Cluster(format!("free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| DevDbError::Cluster(format!("free port: {e}")))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn postgres_user() -> Result<(u32, u32), DevDbError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| DevDbError::Cluster(format!("/etc/passwd: {e}")))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("postgres")).then(|| {
                let _ = fields.next();
                let uid = fields.next()?.parse().ok()?;
                let gid = fields.next()?.parse().ok()?;
                Some((uid, gid))
            })?
        })
        .ok_or_else(|| {
            DevDbError::Cluster(String::from(
                "running as root, but there is no `postgres` user to run the cluster as (initdb refuses root); install PostgreSQL from Debian's packages, which creates it",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_postgresql_would_change_are_refused() {
        let db = DevDatabase {
            url: String::from("postgres://u@h:1/db"),
            origin: Origin::Environment,
            cluster: None,
        };
        for name in ["", "Upper", "a-b", "x\"y", &"x".repeat(64)] {
            assert!(matches!(db.create_database(name), Err(DevDbError::Database(_))), "{name:?}");
        }
    }

    #[test]
    fn replaces_database_in_urls() {
        assert_eq!(replace_database("postgres://u@h:1/db", "x"), "postgres://u@h:1/x");
        assert_eq!(replace_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn replaces_host_and_port_in_urls() {
        assert_eq!(replace_host_port("postgres://u:p@h:1/db", "w", 7), "postgres://u:p@w:7/db");
        assert_eq!(replace_host_port("postgres://h/db?x=1", "w", 7), "postgres://w:7/db?x=1");
        assert_eq!(replace_host_port("postgres://u@h", "w", 7), "postgres://u@w:7");
    }
}
