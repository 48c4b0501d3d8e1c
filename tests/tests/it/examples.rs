//! The example applications, run as a user runs them: a missing or
//! unreachable database is one clear line on stderr, `per_deployment` serves
//! only the tenant it is deployed for, and the quickstart works on a machine
//! with no PostgreSQL server running and leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tenancy_tests::{unique_schema, url};

const EXAMPLES: [&str; 4] = ["quickstart", "saas", "per_deployment", "axum_service"];
const UNREACHABLE: &str = "postgres://postgres@127.0.0.1:1/tenancy";

/// The examples' binaries, built once per test run (a no-op when `cargo test
/// --workspace` has built them already) into this test's target directory.
pub(crate) fn example(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // <target>/<profile>/deps/it-<hash>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned();
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "tenancy-examples", "--examples", "--target-dir"])
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the examples failed");
        profile_dir.join("examples")
    });
    dir.join(name)
}

/// An example process with a clean environment: no `DATABASE_URL`, no `TENANCY_SCHEMA`.
pub(crate) fn command(name: &str) -> Command {
    let mut cmd = Command::new(example(name));
    cmd.env_remove("DATABASE_URL").env_remove("TENANCY_SCHEMA").env_remove("RUST_BACKTRACE");
    cmd
}

fn run(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait for example")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the process failed, saying exactly one line on stderr:
/// `error: ...`, without a panic or `Debug` output.
fn assert_one_line_error(name: &str, out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{name} succeeded; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "{name} exit status; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{name} must say one line on stderr, said:\n{err}");
    assert!(lines[0].starts_with("error: "), "{name}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{name} panicked: {err}");
    assert!(!err.contains("{ ") && !err.contains("Error("), "{name} shows Debug output: {err}");
    lines[0].to_owned()
}

#[test]
fn every_example_fails_fast_with_one_line_when_the_database_is_unreachable() {
    for name in EXAMPLES {
        let mut cmd = command(name);
        cmd.env("DATABASE_URL", UNREACHABLE).env("TENANCY_SCHEMA", "acme");
        let started = Instant::now();
        let out = run(cmd, "");
        let line = assert_one_line_error(name, &out);
        assert!(started.elapsed() < Duration::from_secs(10), "{name} took {:?} to fail", started.elapsed());
        assert!(line.contains(UNREACHABLE) && line.contains("not reachable"), "{name}: {line}");
        assert!(line.contains("Connection refused"), "{name} should give the reason: {line}");
    }
}

#[test]
fn per_deployment_refuses_to_start_without_a_valid_tenant_before_touching_the_database() {
    let mut cmd = command("per_deployment");
    cmd.env("DATABASE_URL", UNREACHABLE);
    let line = assert_one_line_error("per_deployment", &run(cmd, ""));
    assert!(line.contains("TENANCY_SCHEMA is not set"), "{line}");

    for (value, rule) in
        [("Acme", "lowercase"), ("acme; DROP SCHEMA public", "only lowercase letters"), ("", "empty")]
    {
        let mut cmd = command("per_deployment");
        cmd.env("DATABASE_URL", UNREACHABLE).env("TENANCY_SCHEMA", value);
        let line = assert_one_line_error("per_deployment", &run(cmd, ""));
        assert!(line.starts_with("error: TENANCY_SCHEMA: invalid schema name"), "{line}");
        assert!(line.contains(rule), "{value:?} should be refused for its rule ({rule}): {line}");
    }
}

/// Decommissions a deployment's tenant when the test ends, however it ends.
struct Deployment(String);

impl Deployment {
    fn serve(&self, requests: &str) -> String {
        let mut cmd = command("per_deployment");
        cmd.env("DATABASE_URL", url()).env("TENANCY_SCHEMA", &self.0);
        let out = run(cmd, requests);
        assert!(out.status.success(), "per_deployment {} failed: {}", self.0, stderr(&out));
        stdout(&out)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let mut cmd = command("per_deployment");
        cmd.env("DATABASE_URL", url()).env("TENANCY_SCHEMA", &self.0).arg("--decommission");
        let _ = run(cmd, "");
    }
}

#[test]
fn per_deployment_serves_only_its_own_tenant_and_keeps_it_across_restarts() {
    let alpha = Deployment(unique_schema("deploy_alpha").to_string());
    let beta = Deployment(unique_schema("deploy_beta").to_string());

    let first = alpha.serve("add alpha's secret plan\nlist\n");
    assert!(first.contains(&format!("provisioned tenant {}", alpha.0)), "{first}");
    assert!(first.contains(&format!("serving tenant {0} only (search path: {0})", alpha.0)), "{first}");
    assert!(first.contains("#1 [ ] alpha's secret plan"), "{first}");

    let other = beta.serve("list\nadd beta's own\ndone 1\nlist\n");
    assert!(!other.contains("alpha"), "beta's deployment sees alpha's data:\n{other}");
    assert!(other.contains("(no todos)") && other.contains("#1 [x] beta's own"), "{other}");

    let restarted = alpha.serve("list\n");
    assert!(restarted.contains(&format!("tenant {} is provisioned and up to date", alpha.0)), "{restarted}");
    assert!(restarted.contains("#1 [ ] alpha's secret plan") && !restarted.contains("beta"), "{restarted}");

    let mut cmd = command("per_deployment");
    cmd.env("DATABASE_URL", url()).env("TENANCY_SCHEMA", &alpha.0).arg("--decommission");
    let out = run(cmd, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("decommissioned"), "{}", stdout(&out));
    let after = alpha.serve("list\n");
    assert!(
        after.contains(&format!("provisioned tenant {}", alpha.0)) && after.contains("(no todos)"),
        "{after}"
    );
}

/// Directories and processes of throwaway clusters started by process `pid`.
fn leftovers_of(pid: u32) -> (Vec<PathBuf>, Vec<String>) {
    let prefix = format!("tenancy-pg-{pid}-");
    let dirs = std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let processes = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&prefix))
                .collect()
        })
        .unwrap_or_default();
    (dirs, processes)
}

fn nothing_listens_on_5432() -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], 5432).into(), Duration::from_millis(300)).is_err()
}

#[test]
fn quickstart_without_any_server_uses_a_throwaway_cluster_and_leaves_nothing_behind() {
    // Where a server answers on 5432, hide it in a network namespace of the
    // quickstart's own (root only); the machine's server keeps running.
    let mut cmd = if nothing_listens_on_5432() {
        command("quickstart")
    } else if Command::new("unshare").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
        let mut cmd = Command::new("unshare");
        cmd.args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\""]).arg(example("quickstart"));
        cmd.env_remove("DATABASE_URL").env_remove("TENANCY_SCHEMA");
        cmd
    } else {
        panic!(
            "a server answers on 127.0.0.1:5432 and no network namespace can hide it (needs root and `unshare`): \
             stop that server or run the tests as root to check the quickstart's throwaway-cluster path"
        );
    };
    let child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // `unshare` and `sh` exec the quickstart: the pid names the cluster's directory.
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let text = stdout(&out);
    assert!(out.status.success(), "quickstart failed: {}\n{text}", stderr(&out));
    assert!(text.contains("a throwaway cluster on 127.0.0.1:"), "{text}");
    assert!(text.contains("ok: every tenant reads back exactly what it wrote"), "{text}");

    // The directory is removed before the process exits, not later by the watchdog.
    let (dirs, _) = leftovers_of(pid);
    assert!(dirs.is_empty(), "the quickstart left {dirs:?} behind");
    // Its watchdog notices within half a second that the cluster is gone.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, processes) = leftovers_of(pid);
        if processes.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the quickstart left processes behind: {processes:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
