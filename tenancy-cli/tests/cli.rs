//! The `tenancy` binary, run as an operator runs it, against a real
//! PostgreSQL: each command's output and exit status, JSON read back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;
use tenancy_test::TestDatabase;

const V1: &str = "20240201000001";
const V3: &str = "20240203000001";

fn migrations(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/migrations").join(dir)
}

/// Runs `tenancy` with `args` on `db`, with no `DATABASE_URL` of the caller's.
fn tenancy(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .env("DATABASE_URL", db.url())
        .args(args)
        .output()
        .expect("run tenancy")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Asserts a failure: status 1 and exactly one line on stderr, which it returns.
fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("tenancy: error: "), "{err}");
    err
}

fn count(db: &TestDatabase, sql: &str, bind: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).bind::<Text, _>(bind).get_result::<N>(&mut db.connect().unwrap()).unwrap().n
}

fn versions(db: &TestDatabase, schema: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Text)]
        version: String,
    }
    diesel::sql_query(format!("SELECT version FROM \"{schema}\".__diesel_schema_migrations ORDER BY 1"))
        .load::<V>(&mut db.connect().unwrap())
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect()
}

/// A database with tenants `t00`..`t{n-1}` provisioned at version 1 by
/// `tenancy provision`, each with one account.
fn fleet(prefix: &str, n: usize) -> (TestDatabase, Vec<String>) {
    let db = TestDatabase::with_prefix(prefix).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
    let mut args = vec!["provision", "--migrations"];
    let v1 = migrations("v1");
    args.push(v1.to_str().unwrap());
    args.extend(names.iter().map(String::as_str));
    let out = tenancy(&db, &args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for name in &names {
        assert!(
            stdout(&out).contains(&format!("{name}: created, 1 migration(s) applied")),
            "{}",
            stdout(&out)
        );
    }
    let mut admin = db.connect().unwrap();
    for name in &names {
        admin
            .batch_execute(&format!("INSERT INTO \"{name}\".accounts (email) VALUES ('a@{name}.test')"))
            .unwrap();
    }
    (db, names)
}

/// Makes the second migration of `v2` fail for `schema`.
fn break_tenant(db: &TestDatabase, schema: &str) {
    db.connect()
        .unwrap()
        .batch_execute(&format!("INSERT INTO \"{schema}\".accounts (email) VALUES (NULL)"))
        .unwrap();
}

#[test]
fn every_command_has_help() {
    let db = TestDatabase::with_prefix("cli_help").unwrap();
    let commands: [&[&str]; 10] = [
        &[],
        &["migrate"],
        &["revert"],
        &["list"],
        &["show"],
        &["provision"],
        &["drop"],
        &["shared"],
        &["shared", "migrate"],
        &["status"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = tenancy(&db, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage: tenancy"), "{args:?}: {}", stdout(&out));
    }
    let out = tenancy(&db, &["migrate", "--help"]);
    for option in [
        "--jobs",
        "--tenants",
        "--tenants-file",
        "--except",
        "--canary",
        "--dry-run",
        "--json",
        "--database-url",
        "--migrations",
    ] {
        assert!(stdout(&out).contains(option), "migrate --help lacks {option}");
    }
}

#[test]
fn a_failing_tenant_in_the_middle_of_a_fleet_run_is_reported_and_fails_the_run() {
    let (db, t) = fleet("cli_fleet", 7);
    break_tenant(&db, &t[3]);
    let v2 = migrations("v2");

    let out = tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap(), "--jobs", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("FAILED ")).collect();
    assert_eq!(failures.len(), 1, "{text}");
    assert!(
        failures[0].starts_with("FAILED t03: migration 2024-02-02-000001_require_email failed"),
        "{text}"
    );
    assert!(failures[0].contains("null values"), "the cause is on the line: {text}");
    assert!(text.contains("7 tenant(s): 6 migrated, 1 failed; 7 visited"), "{text}");
    for (i, name) in t.iter().enumerate() {
        let expected = if i == 3 { vec![V1] } else { vec![V1, "20240202000001", V3] };
        assert_eq!(versions(&db, name), expected, "{name}");
    }

    // The rerun, as JSON: only the failed tenant is visited, and it fails again.
    let out = tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["visited"], 1);
    assert_eq!(report["counts"]["failed"], 1);
    assert_eq!(report["counts"]["already_current"], 6);
    assert_eq!(report["latest_version"], V3);
    let tenants = report["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 7);
    let failed: Vec<&Value> = tenants.iter().filter(|t| t["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["schema"], "t03");
    assert!(failed[0]["error"].as_str().unwrap().contains("require_email"));

    // Fixed, the run succeeds and exits 0.
    db.connect().unwrap().batch_execute("UPDATE t03.accounts SET email = 'x' WHERE email IS NULL").unwrap();
    let out = tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("7 tenant(s): 1 migrated, 6 already current; 1 visited"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn canary_stops_at_a_failure_and_leaves_the_rest_untouched() {
    let (db, t) = fleet("cli_canary", 6);
    break_tenant(&db, &t[1]);
    let v2 = migrations("v2");
    let out = tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap(), "--canary", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["canary_failed"], true);
    assert_eq!(report["counts"]["applied"], 1);
    assert_eq!(report["counts"]["failed"], 1);
    assert_eq!(report["counts"]["skipped"], 4);
    let outcome = |name: &str| {
        report["tenants"].as_array().unwrap().iter().find(|l| l["schema"] == name).unwrap()["outcome"].clone()
    };
    assert_eq!(outcome("t00"), "applied");
    assert_eq!(outcome("t01"), "failed");
    for name in &t[2..] {
        assert_eq!(outcome(name), "skipped");
        assert_eq!(versions(&db, name), [V1], "{name} untouched");
    }

    // The same in text: the failure line and the canary line.
    let out = tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap(), "--canary", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAILED t01: "), "{text}");
    assert!(text.contains("canary failed: 4 tenant(s) not tried"), "{text}");
}

#[test]
fn subsets_and_dry_runs_choose_what_migrate_touches() {
    let (db, t) = fleet("cli_subset", 5);
    let v2 = migrations("v2");
    let v2 = v2.to_str().unwrap();

    let out = tenancy(&db, &["migrate", "--migrations", v2, "--dry-run", "--json"]);
    assert!(out.status.success());
    assert_eq!(json(&out)["counts"]["pending"], 5);
    assert_eq!(versions(&db, &t[0]), [V1], "a dry run changes nothing");

    let out = tenancy(&db, &["migrate", "--migrations", v2, "--tenants", "t00,t01", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["counts"]["applied"], 2);
    assert_eq!(versions(&db, &t[2]), [V1]);

    let file = std::env::temp_dir().join(format!("tenancy-cli-{}-tenants.txt", std::process::id()));
    std::fs::write(&file, "# the second wave\nt02\n\nt03\n").unwrap();
    let out = tenancy(
        &db,
        &[
            "migrate",
            "--migrations",
            v2,
            "--tenants-file",
            file.to_str().unwrap(),
            "--except",
            "t03",
            "--json",
        ],
    );
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["counts"]["total"], 1);
    assert_eq!(report["tenants"][0]["schema"], "t02");
    assert_eq!(versions(&db, &t[3]), [V1]);

    // A name that is no tenant fails the run; a name that is no valid name is an error.
    let out = tenancy(&db, &["migrate", "--migrations", v2, "--tenants", "t04,nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("UNKNOWN nobody: not a registered tenant"), "{}", stdout(&out));
    let err = one_line_error(&tenancy(&db, &["migrate", "--migrations", v2, "--tenants", "Bad-Name"]));
    assert!(err.contains("invalid schema name \"Bad-Name\""), "{err}");
}

#[test]
fn list_show_status_and_drop_report_the_registry() {
    let (db, t) = fleet("cli_registry", 3);
    break_tenant(&db, &t[2]);
    let v2 = migrations("v2");
    assert_eq!(tenancy(&db, &["migrate", "--migrations", v2.to_str().unwrap()]).status.code(), Some(1));

    let out = tenancy(&db, &["list"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().starts_with("tenant"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("t00") && l.contains("ready") && l.contains(V3)), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("t02") && l.contains("failed") && l.contains("require_email")),
        "{text}"
    );

    let out = tenancy(&db, &["list", "--state", "failed", "--json"]);
    assert!(out.status.success());
    let list = json(&out);
    let tenants = list["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["schema"], "t02");
    assert_eq!(tenants[0]["migration_version"], V1);

    let out = tenancy(&db, &["show", "t00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "tenant:      t00",
        "state:       ready",
        "version:     20240203000001 (3 migration(s) applied)",
        "size:",
        "applied:",
        "  20240202000001",
    ] {
        assert!(text.contains(expected), "show lacks {expected:?}: {text}");
    }
    let shown = json(&tenancy(&db, &["show", "t00", "--json"]));
    assert_eq!(shown["versions_applied"].as_array().unwrap().len(), 3);
    assert!(shown["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(shown["tables"], 3, "accounts, email_audit and diesel's own");
    let err = one_line_error(&tenancy(&db, &["show", "nobody"]));
    assert!(err.contains("\"nobody\" is not a registered tenant"), "{err}");

    let out = tenancy(&db, &["status", "--migrations", v2.to_str().unwrap()]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("3 tenant(s)"), "{text}");
    assert!(
        text.contains("migrate would migrate 1 tenant(s) to 20240203000001 (2 already current, 0 missing)"),
        "{text}"
    );
    let status = json(&tenancy(&db, &["status", "--json", "--migrations", v2.to_str().unwrap()]));
    assert_eq!(status["by_state"]["ready"], 2);
    assert_eq!(status["by_state"]["failed"], 1);
    assert_eq!(status["by_version"][V3], 2);
    assert_eq!(status["migrate"]["pending_tenants"][0], "t02");

    // drop: refused without --yes; done with it; then not found.
    let err = one_line_error(&tenancy(&db, &["drop", "t00"]));
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", "t00"), 1);
    let out = tenancy(&db, &["drop", "t00", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "t00: dropped\n");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", "t00"), 0);
    let err = one_line_error(&tenancy(&db, &["drop", "t00", "--yes"]));
    assert!(err.contains("\"t00\" is not a registered tenant"), "{err}");
    // What the library refuses, the command refuses: a schema that is not a tenant, the registry.
    db.connect().unwrap().batch_execute("CREATE SCHEMA billing").unwrap();
    let err = one_line_error(&tenancy(&db, &["drop", "billing", "--yes"]));
    assert!(err.contains("\"billing\" is not a registered tenant"), "{err}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", "billing"), 1);
    let err = one_line_error(&tenancy(&db, &["drop", "tenancy", "--yes"]));
    assert!(err.contains("tenant registry"), "{err}");
    let err = one_line_error(&tenancy(&db, &["drop", "public", "--yes"]));
    assert!(err.contains("invalid schema name"), "{err}");
}

#[test]
fn provision_and_shared_migrate_report_what_they_did() {
    let db = TestDatabase::with_prefix("cli_provision").unwrap();
    let v1 = migrations("v1");
    let v1 = v1.to_str().unwrap();
    let out = tenancy(&db, &["provision", "--migrations", v1, "acme", "globex"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "acme: created, 1 migration(s) applied\nglobex: created, 1 migration(s) applied\n"
    );
    let out = tenancy(&db, &["provision", "--migrations", v1, "acme"]);
    assert_eq!(stdout(&out), "acme: already provisioned and current\n");

    // A schema that exists but is no tenant is refused, and the exit status says so.
    db.connect().unwrap().batch_execute("CREATE SCHEMA billing").unwrap();
    let out = tenancy(&db, &["provision", "--migrations", v1, "billing", "initech"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAILED billing: refused to provision \"billing\""), "{text}");
    assert!(text.contains("initech: created"), "the others still go on: {text}");

    let shared = migrations("shared");
    let out = tenancy(&db, &["shared", "migrate", "--migrations", shared.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "shared schema public: 1 migration(s) applied: 20240301000001\n");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = 'plans'",
            "public"
        ),
        1
    );
    let out = tenancy(&db, &["shared", "migrate", "--migrations", shared.to_str().unwrap()]);
    assert_eq!(stdout(&out), "shared schema public: already current\n");
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let db = TestDatabase::with_prefix("cli_errors").unwrap();
    let err = one_line_error(&tenancy(&db, &["migrate"]));
    assert!(err.contains("--migrations DIR"), "{err}");
    let err = one_line_error(&tenancy(&db, &["migrate", "--migrations", "/no/such/dir"]));
    assert!(err.contains("no such directory"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["list", "--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("could not connect to PostgreSQL"), "{err}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_tenancy")).env_remove("DATABASE_URL").arg("list").output().unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("DATABASE_URL"), "{err}");
    // Usage errors are clap's: status 2.
    assert_eq!(tenancy(&db, &["migrate", "--jobs", "0"]).status.code(), Some(2));
    assert_eq!(tenancy(&db, &["list", "--state", "happy"]).status.code(), Some(2));
}

#[test]
fn revert_needs_yes_and_reverts_the_latest_migration_of_the_chosen_tenants() {
    let (db, t) = fleet("cli_revert", 3);
    let v2 = migrations("v2");
    let v2 = v2.to_str().unwrap();
    assert!(tenancy(&db, &["migrate", "--migrations", v2]).status.success());

    let err = one_line_error(&tenancy(&db, &["revert", "--migrations", v2, "--tenants", "t00"]));
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(versions(&db, &t[0]).len(), 3, "nothing reverted without --yes");

    let out = tenancy(&db, &["revert", "--migrations", v2, "--tenants", "t00,t01", "--yes", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["counts"]["reverted"], 2);
    assert_eq!(report["tenants"][0]["versions"][0], V3);
    assert_eq!(versions(&db, &t[0]), [V1, "20240202000001"]);
    assert_eq!(versions(&db, &t[2]).len(), 3, "not chosen");

    // A rerun finds nothing left to revert.
    let out = tenancy(&db, &["revert", "--migrations", v2, "--tenants", "t00,t01", "--yes"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("2 tenant(s): 2 already current; 0 visited"), "{}", stdout(&out));
}

#[test]
fn migrate_runs_behind_pgbouncer_in_transaction_mode() {
    let (db, t) = fleet("cli_bouncer", 4);
    break_tenant(&db, &t[1]);
    let bouncer = tenancy_devdb::pgbouncer::PgBouncer::start(db.url())
        .unwrap_or_else(|e| panic!("this test needs a real PgBouncer (scripts/test.sh installs it): {e}"));
    let v2 = migrations("v2");
    let out = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["--pooler", "transaction", "--database-url", &bouncer.url_for(db.name())])
        .args(["migrate", "--jobs", "2", "--json", "--migrations", v2.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        (report["counts"]["applied"].as_u64(), report["counts"]["failed"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(versions(&db, &t[0]), [V1, "20240202000001", V3]);
    assert_eq!(versions(&db, &t[1]), [V1]);
}
