//! A real PgBouncer in transaction pooling mode, for tests that must show
//! what a transaction pooler does to session state.
//!
//! [`PgBouncer::start`] runs Debian's `pgbouncer` binary (`apt-get install
//! pgbouncer`) on a free loopback port in front of a given PostgreSQL, from
//! a temporary directory holding its ini file, user list and log. Dropping
//! the handle stops it and removes the directory; if the process ends
//! without dropping it, a watchdog notices and does the same.
//!
//! When run as root, PgBouncer runs as the `postgres` user (it refuses root).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::{Connection, PgConnection};

/// What went wrong while starting PgBouncer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgBouncerError {
    /// The `pgbouncer` binary is not installed.
    #[error(
        "the `pgbouncer` binary was not found (looked on PATH and in /usr/sbin, /usr/bin, /usr/local/bin); install it (Debian: apt-get install pgbouncer, which scripts/test.sh does) or put it on PATH"
    )]
    NotInstalled,
    /// The upstream URL could not be understood.
    #[error("cannot put PgBouncer in front of {url:?}: {reason}")]
    Upstream {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Preparing the directory, launching or reaching PgBouncer failed.
    #[error("could not start PgBouncer: {0}")]
    Start(String),
}

/// The parts of a `postgres://` URL PgBouncer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upstream {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    database: String,
}

impl Upstream {
    fn parse(url: &str) -> Result<Self, PgBouncerError> {
        let bad = |reason: &str| PgBouncerError::Upstream { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("expected a postgres:// URL"))?;
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let (authority, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("postgres", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (userinfo.to_owned(), None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("the port is not a number"))?),
            None => (hostport, 5432),
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let safe = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !safe(&user) || !safe(host) || !safe(database) || user.is_empty() {
            return Err(bad("user, host and database must be plain [A-Za-z0-9._-] words"));
        }
        if password.as_deref().is_some_and(|p| p.contains(['"', '\'', ' ', '\n'])) {
            return Err(bad("the password may not contain quotes, spaces or newlines"));
        }
        Ok(Self {
            user,
            password,
            host: host.to_owned(),
            port,
            database: if database.is_empty() { String::from("postgres") } else { database.to_owned() },
        })
    }
}

/// A running PgBouncer in `pool_mode = transaction`, stopped on drop.
#[derive(Debug)]
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    upstream: Upstream,
}

/// Settings for [`PgBouncer::start_with`]; every one has a default.
#[derive(Debug, Clone)]
pub struct PgBouncerConfig {
    /// Server connections per (database, user) pair. Default: 8.
    pub pool_size: u32,
    /// Client connections accepted. Default: 500.
    pub max_client_conn: u32,
}

impl Default for PgBouncerConfig {
    fn default() -> Self {
        Self { pool_size: 8, max_client_conn: 500 }
    }
}

impl PgBouncer {
    /// Starts PgBouncer in transaction pooling mode in front of the
    /// PostgreSQL at `upstream_url` (any of its databases are reachable
    /// through it), with [`PgBouncerConfig::default`].
    pub fn start(upstream_url: &str) -> Result<Self, PgBouncerError> {
        Self::start_with(upstream_url, &PgBouncerConfig::default())
    }

    /// Like [`PgBouncer::start`], with explicit settings.
    pub fn start_with(upstream_url: &str, config: &PgBouncerConfig) -> Result<Self, PgBouncerError> {
        let binary = find_pgbouncer().ok_or(PgBouncerError::NotInstalled)?;
        let upstream = Upstream::parse(upstream_url)?;
        let run_as = if super::is_root() {
            Some(super::postgres_user().map_err(|e| PgBouncerError::Start(e.to_string()))?)
        } else {
            None
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tenancy-pgbouncer-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let start = |e: std::io::Error, what: &str| PgBouncerError::Start(format!("{what}: {e}"));
        std::fs::create_dir_all(&dir).map_err(|e| start(e, "create its directory"))?;
        let port = super::free_port().map_err(|e| PgBouncerError::Start(e.to_string()))?;
        let bouncer = Self { dir, port, upstream };
        bouncer.write_config(config).map_err(|e| start(e, "write its configuration"))?;
        if let Some((uid, gid)) = run_as {
            for path in [bouncer.dir.clone(), bouncer.ini(), bouncer.dir.join("userlist.txt")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| start(e, &format!("chown {}", path.display())))?;
            }
        }
        bouncer.launch(&binary, run_as)?;
        bouncer.wait_until_ready()?;
        Ok(bouncer)
    }

    fn ini(&self) -> PathBuf {
        self.dir.join("pgbouncer.ini")
    }

    fn write_config(&self, config: &PgBouncerConfig) -> std::io::Result<()> {
        let up = &self.upstream;
        let password = up.password.as_deref().map(|p| format!(" password={p}")).unwrap_or_default();
        let ini = format!(
            "[databases]\n\
             * = host={host} port={port} user={user}{password}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = {max_client}\n\
             server_reset_query =\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n\
             admin_users = {user}\n\
             server_login_retry = 1\n\
             ",
            host = up.host,
            port = up.port,
            user = up.user,
            listen = self.port,
            dir = self.dir.display(),
            pool_size = config.pool_size,
            max_client = config.max_client_conn,
        );
        std::fs::write(self.ini(), ini)?;
        std::fs::write(self.dir.join("userlist.txt"), format!("\"{}\" \"\"\n", up.user))
    }

    /// Runs PgBouncer in the foreground under a shell that also watches this
    /// process: when it is gone (or the directory is removed), PgBouncer is
    /// stopped and the directory deleted. The watch looks at `/proc`, since
    /// `kill -0` on a root process fails for the `postgres` user.
    fn launch(&self, binary: &Path, run_as: Option<(u32, u32)>) -> Result<(), PgBouncerError> {
        let script = format!(
            r#"
            "{binary}" "{ini}" >>"{dir}/stdout.log" 2>&1 &
            bouncer=$!
            while [ -e /proc/{parent} ] && kill -0 $bouncer 2>/dev/null && [ -d "{dir}" ]; do sleep 0.3; done
            kill -INT $bouncer 2>/dev/null
            sleep 0.5
            kill -KILL $bouncer 2>/dev/null
            rm -rf "{dir}"
            "#,
            binary = binary.display(),
            ini = self.ini().display(),
            dir = self.dir.display(),
            parent = std::process::id(),
        );
        let mut cmd = Command::new("sh");
        if let Some((uid, gid)) = run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| PgBouncerError::Start(format!("spawn {}: {e}", binary.display())))?;
        Ok(())
    }

    fn wait_until_ready(&self) -> Result<(), PgBouncerError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut last = String::from("PgBouncer did not open its port");
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match PgConnection::establish(&self.url()) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(PgBouncerError::Start(format!("{last}; its log:\n{}", self.log())))
    }

    /// The loopback port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for the upstream URL's database, through PgBouncer.
    pub fn url(&self) -> String {
        self.url_for(&self.upstream.database)
    }

    /// A URL for `database`, through PgBouncer.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{database}", self.upstream.user, self.port)
    }

    /// PgBouncer's log so far (for failure messages).
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
        log.push_str(&std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default());
        log
    }

    /// The directory holding its configuration and log (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Removing the directory makes the watchdog stop PgBouncer; signal it
        // directly too, so the port is free as soon as this returns.
        let pid = std::fs::read_to_string(self.dir.join("pgbouncer.pid")).ok();
        if let Some(pid) = pid.as_deref().map(str::trim).filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
            let _ = Command::new("kill").args(["-INT", pid]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the `pgbouncer` binary is, if installed.
pub fn find_pgbouncer() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("pgbouncer")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"].map(PathBuf::from))
        .find(|p| p.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        let up = Upstream::parse("postgres://postgres@127.0.0.1:5433/app").unwrap();
        assert_eq!(
            up,
            Upstream {
                user: "postgres".into(),
                password: None,
                host: "127.0.0.1".into(),
                port: 5433,
                database: "app".into()
            }
        );
        let up = Upstream::parse("postgresql://u:secret@localhost/db?sslmode=disable").unwrap();
        assert_eq!((up.password.as_deref(), up.port, up.database.as_str()), (Some("secret"), 5432, "db"));
        assert!(Upstream::parse("mysql://x").is_err());
        assert!(Upstream::parse("postgres://u@h:x/db").is_err());
        assert!(Upstream::parse("postgres://u;x@h/db").is_err());
    }
}
