//! Use LCache from Rust: an application embeds a node, gives it a loader that reads the
//! application's own data source, joins its static peers, and serves its own reads through the
//! in-process `Group` handle (no gRPC hop for the local call).
//!
//! Three instances of the application run here in one process so the example runs alone (in
//! production each is its own process, with `.listen(...)` on its own host). Every instance reads
//! every user; the example checks the answers, and that the cluster read each user from the
//! "database" once, then exits (non-zero if a check failed).
//!
//! Run: `cargo run -p lcache-node --example embed`
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use lcache_node::{loader_fn, Loaded, NodeBuilder, RunningNode};

/// The application's data source: a table of users, standing for a database, that counts
/// the reads of each name.
struct Database {
    users: BTreeMap<String, String>,
    reads: Mutex<BTreeMap<String, usize>>,
}

impl Database {
    fn lookup(&self, name: &[u8]) -> Option<String> {
        let name = String::from_utf8_lossy(name).into_owned();
        let found = self.users.get(&name).cloned();
        if let Ok(mut reads) = self.reads.lock() {
            *reads.entry(name).or_default() += 1;
        }
        found
    }

    fn reads_of(&self, name: &str) -> usize {
        self.reads
            .lock()
            .map_or(0, |reads| reads.get(name).copied().unwrap_or(0))
    }
}

/// Starts one instance of the application: its node, with `peers`, caching `users` from `db`.
async fn start_app(
    id: &str,
    listener: std::net::TcpListener,
    peers: &[(String, String)],
    db: Arc<Database>,
) -> Result<RunningNode> {
    let mut node = NodeBuilder::new(id).listener(listener);
    for (peer, addr) in peers {
        node = node.peer(peer.as_str(), addr.as_str());
    }
    let node = node
        .group(
            "users",
            16 << 20,
            loader_fn(move |name: Bytes| {
                let db = db.clone();
                async move { Ok(db.lookup(&name).map(Loaded::new)) }
            }),
        )
        .start()
        .await?;
    Ok(node)
}

#[tokio::main]
async fn main() -> Result<()> {
    let db = Arc::new(Database {
        users: [
            ("alice", "Alice Liddell"),
            ("bob", "Bob Dylan"),
            ("carol", "Carol King"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        reads: Mutex::default(),
    });
    // Each instance's port, known before any starts: they are each other's static peers.
    let listeners = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let peers = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((format!("app-{i}"), l.local_addr()?.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mut apps = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        apps.push(start_app(&format!("app-{i}"), listener, &peers, db.clone()).await?);
    }

    // Every instance answers its own requests through its in-process handle.
    for app in &apps {
        let users = app.group("users").context("the users group")?;
        for (name, full) in &db.users {
            let value = users.get(name.clone()).await?;
            ensure!(
                value.as_deref() == Some(full.as_bytes()),
                "{}: {name} read {value:?}",
                app.member().id
            );
        }
        let missing = users.get("mallory").await?;
        ensure!(missing.is_none(), "an absent user was found: {missing:?}");
    }
    // The cluster loaded each user once, on its owner, however many instances read it.
    for name in db.users.keys() {
        let reads = db.reads_of(name);
        ensure!(
            reads == 1,
            "{name} was read {reads} times from the database"
        );
    }
    println!(
        "{} instances read {} users 3 times each: the database was read once per user",
        apps.len(),
        db.users.len()
    );
    for app in apps {
        app.shutdown().await?;
    }
    Ok(())
}
