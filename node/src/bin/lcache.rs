//! `lcache`: a command-line client for LCache nodes, and the three-node demo.
//!
//! Exit codes: 0 success, 1 a `get` miss (`not found` on stderr), 2 any other error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use lcache_node::spec::parse_duration;
use lcache_transport::{CacheClient, ClientConfig, GroupCounters, NodeStats};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "lcache", version, about = "LCache command-line client")]
struct Args {
    /// Node to talk to.
    #[arg(long, default_value = "127.0.0.1:7001", global = true)]
    addr: String,
    /// Cache group.
    #[arg(long, default_value = "default", global = true)]
    group: String,
    /// Deadline of the request.
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the raw value of KEY to stdout.
    Get {
        /// The key.
        key: String,
    },
    /// Store VALUE under KEY.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Lifetime, e.g. 30s (defaults to the group's).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Remove KEY.
    Del {
        /// The key.
        key: String,
    },
    /// Print the node's counters.
    Stats,
    /// Run three nodes A, B, C on loopback; each sets its key and reads the others'.
    Demo,
}

enum Outcome {
    Done,
    Miss,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Miss) => {
            eprintln!("not found");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<Outcome> {
    if let Command::Demo = args.command {
        let report = lcache_node::demo::run().await?;
        print!("{}", report.render());
        return Ok(Outcome::Done);
    }
    let config = ClientConfig {
        request_timeout: args.timeout,
        ..ClientConfig::default()
    };
    let client = CacheClient::connect(&args.addr, config).await?;
    match args.command {
        Command::Get { key } => match client.get(&args.group, key).await? {
            Some(fetched) => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&fetched.value)?;
                stdout.flush()?;
            }
            None => return Ok(Outcome::Miss),
        },
        Command::Set { key, value, ttl } => {
            client.set(&args.group, key, value, ttl).await?;
        }
        Command::Del { key } => {
            let existed = client.delete(&args.group, key).await?;
            println!("{}", if existed { "deleted" } else { "absent" });
        }
        Command::Stats => print_stats(&client.stats(Some(&args.group)).await?),
        Command::Demo => {}
    }
    Ok(Outcome::Done)
}

/// Prints every counter of every group with its meaning (the docs of `GroupCounters`), then
/// each store tier's budget and contents.
fn print_stats(stats: &NodeStats) {
    for g in &stats.groups {
        println!("node={} group={}", stats.node_id, g.group);
        let docs = GroupCounters::DOCS;
        for ((name, value), doc) in g.counters.values().zip(docs) {
            println!("  {name:<24} {value:>12}  {}", doc.trim());
        }
        for tier in &g.tiers {
            println!(
                "  tier {:<7} budget_bytes={}",
                tier.tier.name(),
                tier.budget_bytes
            );
            for (name, value) in tier.store.values() {
                println!("    {name:<22} {value:>12}");
            }
        }
    }
}
