//! `migrate`, `revert` and `status`: the fleet.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use tenancy_core::{
    list_tenants, migrate_all, revert_last, MigrateOptions, MigrationReport, SchemaName, TenantOutcome,
};

use crate::cli::{Cli, FleetArgs, Selection, StatusArgs};
use crate::{one_line, schema, Outcome, Result, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Migrate,
    Revert,
}

/// The tenants named by `--tenants`/`--tenants-file`, if any, and by `--except`.
fn selection(selection: &Selection) -> Result<(Option<Vec<SchemaName>>, Vec<SchemaName>)> {
    let only = match (&selection.tenants, &selection.tenants_file) {
        (Some(names), _) => Some(
            names.iter().filter(|n| !n.trim().is_empty()).map(|n| schema(n)).collect::<Result<Vec<_>>>()?,
        ),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Usage(format!("--tenants-file {}: {e}", file.display())))?;
            let names = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
            Some(names.map(schema).collect::<Result<Vec<_>>>()?)
        }
        (None, None) => None,
    };
    let except = selection
        .except
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| schema(n))
        .collect::<Result<Vec<_>>>()?;
    Ok((only, except))
}

pub(crate) fn migrate(cli: &Cli, args: &FleetArgs, operation: Operation) -> Result<Outcome> {
    let verb = match operation {
        Operation::Migrate => "migrate",
        Operation::Revert => "revert",
    };
    let migrations = cli.migrations(verb)?;
    let (only, except) = selection(&args.selection)?;
    let pool = cli.pool(u32::from(args.jobs) + 1)?;

    let mut options = MigrateOptions::new()
        .jobs(usize::from(args.jobs))
        .dry_run(args.dry_run)
        .verify_schemas(args.verify_schemas)
        .canary(args.canary.unwrap_or(0))
        .except(except);
    if let Some(only) = only {
        options = options.tenants(only);
    }
    if let Some(seconds) = args.lock_timeout {
        let timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|_| Usage(format!("--lock-timeout {seconds}: not a number of seconds")))?;
        options = options.lock_timeout(Some(timeout));
    }
    let bar = if !args.json && std::io::stderr().is_terminal() {
        // Drawn from the first tenant on, once the total is known.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:>9} [{bar:40}] {pos}/{len} tenants {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(verb);
        Some(bar)
    } else {
        None
    };
    let json = args.json;
    let progress_bar = bar.clone();
    options = options.on_progress(move |p| {
        if let Some(bar) = &progress_bar {
            bar.set_length(p.counts.total as u64);
            bar.set_position(p.counts.done() as u64);
            if bar.is_hidden() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        if let TenantOutcome::Failed { error, .. } = p.outcome {
            if !json {
                let line = format!("FAILED {}: {}", p.schema, one_line(error));
                match &progress_bar {
                    Some(bar) => bar.println(line),
                    None => println!("{line}"),
                }
            }
        }
    });

    let started = Instant::now();
    let report = match operation {
        Operation::Migrate => migrate_all(&pool, migrations, options),
        Operation::Revert => revert_last(&pool, migrations, options),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let failed = report.counts.failed > 0
        || report.counts.skipped > 0
        || report.counts.schema_missing > 0
        || !report.not_registered.is_empty();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report, started.elapsed()))?);
    } else {
        print_summary(&report, verb, args.dry_run, started.elapsed());
    }
    Ok(Outcome::failed_if(failed))
}

fn print_summary(report: &MigrationReport, verb: &str, dry_run: bool, took: Duration) {
    for line in &report.tenants {
        if matches!(line.outcome, TenantOutcome::SchemaMissing) {
            println!("MISSING {}: registered, but its schema does not exist", line.schema);
        }
    }
    for name in &report.not_registered {
        println!("UNKNOWN {name}: not a registered tenant");
    }
    for name in &report.unregistered_schemas {
        println!("warning: schema {name} has diesel migrations but is not a registered tenant; not migrated");
    }
    for (name, reason) in &report.invalid_registry_rows {
        println!("warning: registry row {name:?} is not valid: {reason}");
    }
    if report.canary_failed {
        println!("canary failed: {} tenant(s) not tried", report.counts.skipped);
    }
    let c = &report.counts;
    let mut parts = Vec::new();
    for (n, what) in [
        (c.applied, "migrated"),
        (c.reverted, "reverted"),
        (c.already_current, "already current"),
        (c.pending, if verb == "revert" { "to revert" } else { "to migrate" }),
        (c.failed, "failed"),
        (c.skipped, "skipped"),
        (c.schema_missing, "missing"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        parts.push(String::from("no tenants"));
    }
    println!(
        "{}{} tenant(s): {}; {} visited; latest version {}; {:.1}s",
        if dry_run { "dry run, " } else { "" },
        c.total,
        parts.join(", "),
        report.visited,
        report.latest_version.as_deref().unwrap_or("none"),
        took.as_secs_f64()
    );
}

/// The name of an outcome, as JSON shows it.
pub(crate) fn outcome_name(outcome: &TenantOutcome) -> &'static str {
    match outcome {
        TenantOutcome::Applied { .. } => "applied",
        TenantOutcome::AlreadyCurrent => "already_current",
        TenantOutcome::Failed { .. } => "failed",
        TenantOutcome::SchemaMissing => "schema_missing",
        TenantOutcome::Reverted { .. } => "reverted",
        TenantOutcome::Skipped => "skipped",
        TenantOutcome::Pending => "pending",
        _ => "other",
    }
}

fn report_json(report: &MigrationReport, took: Duration) -> Value {
    let tenants: Vec<Value> = report
        .tenants
        .iter()
        .map(|line| {
            let mut entry = json!({ "schema": line.schema.as_str(), "outcome": outcome_name(&line.outcome) });
            match &line.outcome {
                TenantOutcome::Applied { versions } => entry["versions"] = json!(versions),
                TenantOutcome::Reverted { version } => entry["versions"] = json!([version]),
                TenantOutcome::Failed { applied, error } => {
                    entry["versions"] = json!(applied);
                    entry["error"] = json!(one_line(error));
                }
                _ => {}
            }
            entry
        })
        .collect();
    let c = &report.counts;
    json!({
        "latest_version": report.latest_version,
        "visited": report.visited,
        "seconds": took.as_secs_f64(),
        "canary_failed": report.canary_failed,
        "counts": {
            "total": c.total, "applied": c.applied, "already_current": c.already_current,
            "failed": c.failed, "schema_missing": c.schema_missing, "reverted": c.reverted,
            "skipped": c.skipped, "pending": c.pending,
        },
        "tenants": tenants,
        "not_registered": report.not_registered.iter().map(SchemaName::as_str).collect::<Vec<_>>(),
        "unregistered_schemas": report.unregistered_schemas,
        "invalid_registry_rows": report.invalid_registry_rows.iter()
            .map(|(name, reason)| json!({ "schema_name": name, "reason": reason })).collect::<Vec<_>>(),
    })
}

pub(crate) fn status(cli: &Cli, args: &StatusArgs) -> Result<Outcome> {
    let pool = cli.pool(2)?;
    let list = list_tenants(&pool)?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_version: BTreeMap<&str, usize> = BTreeMap::new();
    for tenant in list.iter() {
        *by_state.entry(tenant.state.as_str()).or_default() += 1;
        *by_version.entry(tenant.migration_version.as_deref().unwrap_or("none")).or_default() += 1;
    }
    let plan = match &cli.migrations {
        Some(_) => Some(migrate_all(&pool, cli.migrations("status")?, MigrateOptions::new().dry_run(true))?),
        None => None,
    };
    if args.json {
        let mut out = json!({
            "tenants": list.len(),
            "by_state": by_state,
            "by_version": by_version,
            "invalid_registry_rows": list.invalid_rows.len(),
        });
        if let Some(plan) = &plan {
            out["migrate"] = json!({
                "latest_version": plan.latest_version,
                "to_migrate": plan.counts.pending,
                "already_current": plan.counts.already_current,
                "schema_missing": plan.counts.schema_missing,
                "pending_tenants": plan.tenants.iter()
                    .filter(|t| matches!(t.outcome, TenantOutcome::Pending))
                    .map(|t| t.schema.as_str()).collect::<Vec<_>>(),
            });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{} tenant(s)", list.len());
        println!("by state:");
        for (state, n) in &by_state {
            println!("  {state:<13} {n}");
        }
        println!("by version:");
        for (version, n) in &by_version {
            println!("  {version:<20} {n}");
        }
        if !list.invalid_rows.is_empty() {
            println!("{} invalid registry row(s); see `tenancy list`", list.invalid_rows.len());
        }
        match &plan {
            Some(plan) => println!(
                "migrate would migrate {} tenant(s) to {} ({} already current, {} missing)",
                plan.counts.pending,
                plan.latest_version.as_deref().unwrap_or("none"),
                plan.counts.already_current,
                plan.counts.schema_missing
            ),
            None => println!("pass --migrations DIR to see what migrate would do"),
        }
    }
    Ok(Outcome::Success)
}
