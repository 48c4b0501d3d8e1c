//! `list`, `show`, `provision`, `drop` and `shared migrate`: single tenants
//! and the shared schema.

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use serde_json::{json, Value};
use tenancy_core::{
    drop_tenant, list_tenants, migrate_shared, provision as provision_tenant, tenant_record, TenancyError,
    TenantRecord, TenantState,
};

use crate::cli::{Cli, DropArgs, ListArgs, ProvisionArgs, ShowArgs, StateFilter};
use crate::{one_line, schema, Outcome, Result, Usage};

/// Seconds since the epoch, as an RFC 3339 UTC timestamp.
fn timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

fn record_json(record: &TenantRecord) -> Value {
    json!({
        "schema": record.schema.as_str(),
        "state": record.state.as_str(),
        "migration_version": record.migration_version,
        "migrations_applied": record.migrations_applied,
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "last_error": record.last_error,
    })
}

fn state_of(filter: StateFilter) -> TenantState {
    match filter {
        StateFilter::Provisioning => TenantState::Provisioning,
        StateFilter::Ready => TenantState::Ready,
        StateFilter::Failed => TenantState::Failed,
        StateFilter::Dropping => TenantState::Dropping,
        StateFilter::Missing => TenantState::Missing,
    }
}

pub(crate) fn list(cli: &Cli, args: &ListArgs) -> Result<Outcome> {
    let pool = cli.pool(1)?;
    let list = list_tenants(&pool)?;
    let wanted = args.state.map(state_of);
    let shown: Vec<&TenantRecord> = list.iter().filter(|t| wanted.is_none_or(|s| t.state == s)).collect();
    if args.json {
        let out = json!({
            "tenants": shown.iter().map(|t| record_json(t)).collect::<Vec<_>>(),
            "invalid_registry_rows": list.invalid_rows.iter()
                .map(|(name, reason)| json!({ "schema_name": name, "reason": reason })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let width = shown.iter().map(|t| t.schema.as_str().len()).max().unwrap_or(6).max(6);
        println!(
            "{:<width$}  {:<12}  {:<20}  {:>10}  last error",
            "tenant", "state", "version", "migrations"
        );
        for t in &shown {
            println!(
                "{:<width$}  {:<12}  {:<20}  {:>10}  {}",
                t.schema.as_str(),
                t.state.as_str(),
                t.migration_version.as_deref().unwrap_or("-"),
                t.migrations_applied,
                t.last_error
                    .as_deref()
                    .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            );
        }
        for (name, reason) in &list.invalid_rows {
            eprintln!("warning: registry row {name:?} is not valid: {reason}");
        }
    }
    Ok(Outcome::Success)
}

pub(crate) fn show(cli: &Cli, args: &ShowArgs) -> Result<Outcome> {
    let schema = schema(&args.name)?;
    let pool = cli.pool(1)?;
    let record =
        tenant_record(&pool, &schema)?.ok_or(TenancyError::TenantNotFound { schema: schema.clone() })?;
    std::mem::drop(pool);

    // Introspection on a connection of its own: catalog reads, nothing the pool serves.
    let mut conn = PgConnection::establish(cli.url()?).map_err(TenancyError::Connection)?;
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
        #[diesel(sql_type = Nullable<Text>)]
        run_on: Option<String>,
    }
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = BigInt)]
        bytes: i64,
        #[diesel(sql_type = Text)]
        pretty: String,
        #[diesel(sql_type = BigInt)]
        tables: i64,
    }
    let versions: Vec<Version> = if record.state == TenantState::Missing {
        Vec::new()
    } else {
        diesel::sql_query(format!(
            "SELECT version::text AS version, to_char(run_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS run_on \
             FROM {}.\"__diesel_schema_migrations\" ORDER BY version",
            schema.quoted()
        ))
        .load(&mut conn)
        .unwrap_or_default()
    };
    let size: Size = diesel::sql_query(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes, \
                pg_size_pretty(coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint) AS pretty, \
                count(*) FILTER (WHERE c.relkind IN ('r', 'p')) AS tables \
         FROM pg_class c WHERE c.relnamespace = to_regnamespace($1) AND c.relkind IN ('r', 'p', 'm')",
    )
    .bind::<Text, _>(schema.quoted())
    .get_result(&mut conn)
    .map_err(TenancyError::from)?;

    if args.json {
        let mut out = record_json(&record);
        out["versions_applied"] = json!(versions
            .iter()
            .map(|v| json!({ "version": v.version, "run_on": v.run_on }))
            .collect::<Vec<_>>());
        out["size_bytes"] = json!(size.bytes);
        out["tables"] = json!(size.tables);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("tenant:      {}", record.schema);
        println!("state:       {}", record.state);
        println!(
            "version:     {} ({} migration(s) applied)",
            record.migration_version.as_deref().unwrap_or("none"),
            record.migrations_applied
        );
        println!("created:     {}", timestamp(record.created_at));
        println!("updated:     {}", timestamp(record.updated_at));
        if let Some(error) = &record.last_error {
            println!("last error:  {}", error.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        println!("size:        {} in {} table(s)", size.pretty, size.tables);
        println!("applied:");
        for v in &versions {
            println!("  {}  {}", v.version, v.run_on.as_deref().unwrap_or(""));
        }
    }
    Ok(Outcome::Success)
}

pub(crate) fn provision(cli: &Cli, args: &ProvisionArgs) -> Result<Outcome> {
    let names = args.names.iter().map(|n| schema(n)).collect::<Result<Vec<_>>>()?;
    let migrations = cli.migrations("provision")?;
    let pool = cli.pool(1)?;
    let mut failed = false;
    for name in &names {
        match provision_tenant(&pool, name, migrations.clone()) {
            Ok(done) if done.was_noop() => println!("{name}: already provisioned and current"),
            Ok(done) => println!(
                "{name}: {}, {} migration(s) applied",
                if done.created { "created" } else { "resumed" },
                done.applied.len()
            ),
            Err(error) => {
                failed = true;
                println!("FAILED {name}: {}", one_line(&error));
            }
        }
    }
    Ok(Outcome::failed_if(failed))
}

pub(crate) fn drop(cli: &Cli, args: &DropArgs) -> Result<Outcome> {
    let schema = schema(&args.name)?;
    if !args.yes {
        return Err(Usage(format!(
            "dropping {schema} deletes its schema and all its data; add --yes to confirm"
        ))
        .into());
    }
    let pool = cli.pool(1)?;
    drop_tenant(&pool, &schema)?;
    println!("{schema}: dropped");
    Ok(Outcome::Success)
}

pub(crate) fn shared_migrate(cli: &Cli) -> Result<Outcome> {
    let migrations = cli.migrations("shared migrate")?;
    let pool = cli.pool(1)?;
    let applied = migrate_shared(&pool, migrations)?;
    if applied.is_empty() {
        println!("shared schema {}: already current", cli.shared_schema);
    } else {
        println!(
            "shared schema {}: {} migration(s) applied: {}",
            cli.shared_schema,
            applied.len(),
            applied.join(", ")
        );
    }
    Ok(Outcome::Success)
}
