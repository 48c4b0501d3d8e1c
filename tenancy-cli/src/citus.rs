//! `tenancy citus ..`: tenants on a Citus cluster, through tenancy-core's
//! `citus` module.

use serde_json::json;
use tenancy_core::citus::{self, Node, Placement, TransferMode};

use crate::cli::{CitusCommand, Cli, Transfer};
use crate::{schema, Outcome, Result, Usage};

pub(crate) fn run(cli: &Cli, command: &CitusCommand) -> Result<Outcome> {
    let pool = cli.pool(1)?;
    match command {
        CitusCommand::Placements(args) => {
            let placements = citus::tenant_placements(&pool)?;
            if args.json {
                let rows: Vec<_> = placements
                    .iter()
                    .map(
                        |t| json!({ "tenant": t.schema.as_str(), "placement": placement_json(&t.placement) }),
                    )
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for tenant in &placements {
                    println!("{}\t{}", tenant.schema, tenant.placement);
                }
            }
        }
        CitusCommand::Nodes => {
            for node in citus::nodes(&pool)? {
                println!("{}\t{node}", node.id);
            }
        }
        CitusCommand::Move(args) => {
            let tenant = schema(&args.name)?;
            let to = node(&args.to)?;
            let now = citus::move_tenant(&pool, &tenant, &to, mode(args.mode))?;
            println!("{tenant}: {now}");
        }
        CitusCommand::Rebalance(args) => match citus::start_rebalance(&pool, mode(args.mode))? {
            None => println!("balanced: nothing to move"),
            Some(job) if !args.wait => println!("rebalance started: job {job}"),
            Some(job) => {
                let status = citus::wait_for_rebalance(&pool)?;
                let state = status.as_ref().map_or("finished", |s| s.state.as_str());
                println!("rebalance job {job}: {state}");
                return Ok(Outcome::failed_if(state != "finished"));
            }
        },
        CitusCommand::ReferenceTable(args) => {
            citus::create_reference_table(&pool, &args.table)?;
            println!("{}.{} is a reference table", cli.shared_schema, args.table);
        }
    }
    Ok(Outcome::Success)
}

fn mode(transfer: Transfer) -> TransferMode {
    match transfer {
        Transfer::Auto => TransferMode::Auto,
        Transfer::ForceLogical => TransferMode::ForceLogical,
        Transfer::BlockWrites => TransferMode::BlockWrites,
    }
}

/// `HOST:PORT`.
fn node(text: &str) -> Result<Node> {
    let (host, port) = text
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| Usage(format!("--to {text:?}: expected HOST:PORT")))?;
    let port = port.parse().map_err(|_| Usage(format!("--to {text:?}: {port:?} is not a port")))?;
    Ok(Node::new(host, port))
}

fn placement_json(placement: &Placement) -> serde_json::Value {
    match placement {
        Placement::Node(node) => json!({ "node": node.to_string(), "node_id": node.id }),
        Placement::Unplaced => json!("unplaced"),
        Placement::Local => json!("local"),
        other => json!(other.to_string()),
    }
}
