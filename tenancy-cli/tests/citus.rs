//! `tenancy citus ..` run as an operator runs it, against a real Citus
//! cluster (a coordinator and two workers on loopback, started by the test),
//! and against plain PostgreSQL, where it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn tenancy(url: &str, args: &[&str]) -> Output {
    let migrations = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/migrations/v1");
    Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .env("DATABASE_URL", url)
        .arg("--migrations")
        .arg(migrations)
        .args(args)
        .output()
        .expect("run tenancy")
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Each tenant's node (`None` when not on a worker), from `placements --json`.
fn placements(url: &str) -> Vec<(String, Option<String>)> {
    let rows: Value = serde_json::from_str(&ok(tenancy(url, &["citus", "placements", "--json"]))).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let node = row["placement"]["node"].as_str().map(str::to_owned);
            (row["tenant"].as_str().unwrap().to_owned(), node)
        })
        .collect()
}

#[test]
fn placements_nodes_moves_and_rebalancing_from_the_command_line() {
    let cluster = tenancy_devdb::citus::shared_cluster()
        .unwrap_or_else(|e| panic!("no Citus cluster for the Citus CLI test: {e}"));
    let db = cluster.create_unique_database("cli_citus").unwrap();
    let url = db.url();
    ok(tenancy(url, &["provision", "cli_a", "cli_b", "cli_c"]));

    let nodes: Vec<String> = ok(tenancy(url, &["citus", "nodes"]))
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(nodes.len(), 2, "two workers: {nodes:?}");

    let before = placements(url);
    assert_eq!(before.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["cli_a", "cli_b", "cli_c"]);
    for (tenant, node) in &before {
        assert!(node.as_ref().is_some_and(|n| nodes.contains(n)), "{tenant} is on a worker: {node:?}");
    }

    // Move cli_a to the worker it is not on.
    let from = before[0].1.clone().unwrap();
    let to = nodes.iter().find(|n| **n != from).unwrap();
    let moved = ok(tenancy(url, &["citus", "move", "cli_a", "--to", to, "--mode", "block-writes"]));
    assert!(moved.starts_with("cli_a: ") && moved.trim().ends_with(&format!("({to})")), "{moved}");
    assert_eq!(placements(url)[0].1.as_deref(), Some(to.as_str()));

    // Rebalancing runs to its end and leaves every tenant on a worker.
    let rebalanced = ok(tenancy(url, &["citus", "rebalance", "--wait", "--mode", "block-writes"]));
    assert!(rebalanced.starts_with("balanced") || rebalanced.contains(": finished"), "{rebalanced}");
    assert!(placements(url).iter().all(|(_, node)| node.is_some()));

    // What cannot be done is one line and status 1.
    let unknown = tenancy(url, &["citus", "move", "nobody", "--to", to]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&unknown.stderr).lines().count(), 1);
    let bad_node = tenancy(url, &["citus", "move", "cli_b", "--to", "no-port"]);
    assert_eq!(bad_node.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_node.stderr).contains("HOST:PORT"));
}

#[test]
fn citus_commands_on_plain_postgresql_say_it_is_not_citus() {
    let db = tenancy_test::TestDatabase::with_prefix("cli_not_citus").unwrap();
    let out = tenancy(db.url(), &["citus", "placements"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("citus"), "{err}");
}
