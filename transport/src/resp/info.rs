//! The text of `INFO`: Redis's `# Section` / `field:value` layout with the fields client
//! libraries look for (`redis_version`, `loading`, `role`, `connected_clients`), then LCache's
//! own stats, one line per group.

use std::fmt::Write as _;

use crate::resp::door::FrontDoor;
use crate::resp::door::REDIS_COMPAT_VERSION;
use crate::types::{GroupStats, NodeStats};

/// Sections in the order `INFO` prints them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "lcache",
];

/// The `INFO` text for the sections asked for (none, `all`, `default` or `everything`: every
/// section). An unknown section contributes nothing, as in Redis.
pub(crate) fn render(asked: &[&[u8]], stats: &NodeStats, door: &FrontDoor) -> String {
    let all = asked.is_empty()
        || asked.iter().any(|s| {
            [&b"all"[..], b"default", b"everything"]
                .iter()
                .any(|a| s.eq_ignore_ascii_case(a))
        });
    let mut out = String::new();
    for section in SECTIONS {
        if all
            || asked
                .iter()
                .any(|s| s.eq_ignore_ascii_case(section.as_bytes()))
        {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_section(&mut out, section, stats, door);
        }
    }
    out
}

fn write_section(out: &mut String, section: &str, stats: &NodeStats, door: &FrontDoor) {
    let counts = door.stats.snapshot();
    let mut field = |name: &str, value: &dyn std::fmt::Display| {
        let _ = if name.starts_with('#') {
            write!(out, "{name} {value}\r\n")
        } else {
            write!(out, "{name}:{value}\r\n")
        };
    };
    match section {
        "server" => {
            header(&mut field, "Server");
            field("redis_version", &REDIS_COMPAT_VERSION);
            field("redis_mode", &"standalone");
            field("lcache_version", &env!("CARGO_PKG_VERSION"));
            field("lcache_node_id", &stats.node_id);
            field("resp_group", &door.config.group);
            field("process_id", &std::process::id());
        }
        "clients" => {
            header(&mut field, "Clients");
            field("connected_clients", &counts.connected);
            field("maxclients", &door.config.max_connections);
            field(
                "client_query_buffer_limit",
                &door.config.max_query_buffer_bytes,
            );
            field("proto_max_bulk_len", &door.config.limits.max_bulk_bytes);
        }
        "persistence" => {
            header(&mut field, "Persistence");
            field("loading", &0);
        }
        "stats" => {
            header(&mut field, "Stats");
            field("total_connections_received", &counts.connections_received);
            field("total_commands_processed", &counts.commands_processed);
            field("rejected_connections", &counts.rejected_connections);
            field("lcache_resp_linger_turns", &counts.linger_turns);
            field("lcache_resp_linger_max_turns", &door.linger_turns);
        }
        "replication" => {
            header(&mut field, "Replication");
            field("role", &"master");
            field("connected_slaves", &0);
        }
        _ => {
            header(&mut field, "LCache");
            for group in &stats.groups {
                let counters = group_counters(group)
                    .into_iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(",");
                field(&format!("group_{}", group.group), &counters);
            }
        }
    }
}

/// A `# Name` section header, written through the same sink as the fields.
fn header(field: &mut impl FnMut(&str, &dyn std::fmt::Display), name: &str) {
    field("#", &name);
}

/// A group's counters by name, then each tier's counters and gauges prefixed by the tier's name
/// (`main_bytes`, `hot_entries`, …), in declaration order.
fn group_counters(g: &GroupStats) -> Vec<(String, u64)> {
    let mut fields: Vec<(String, u64)> = g
        .counters
        .values()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for tier in &g.tiers {
        let name = tier.tier.name();
        fields.push((format!("{name}_budget_bytes"), tier.budget_bytes));
        fields.extend(
            tier.store
                .values()
                .map(|(field, value)| (format!("{name}_{field}"), value)),
        );
    }
    fields
}
