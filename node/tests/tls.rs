//! Mutual TLS between every party, with certificates made inside the test: a TLS cluster serves
//! and its nodes reach each other over TLS; a plain-text client and a client whose certificate
//! another CA signed are refused; the binaries' `--tls-*` flags do the same end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::certs::{TempDir, TestCa};
use common::process::NodeProcess;
use common::{echo_loader, with_loader, Cluster, ClusterTls};
use lcache_node::DEFAULT_GROUP;
use lcache_transport::{CacheClient, ClientConfig, TlsConfig};

const G: &str = DEFAULT_GROUP;

fn cluster_tls(ca: &TestCa, nodes: usize) -> ClusterTls {
    ClusterTls {
        nodes: (0..nodes).map(|i| ca.tls(&format!("node-{i}"))).collect(),
        client: ca.tls("client"),
    }
}

/// Short bounds, so a refused connection fails the test quickly if it hangs instead.
fn quick() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_and_its_nodes_reach_each_other() {
    let ca = TestCa::new("lcache test CA");
    let tls = cluster_tls(&ca, 3);
    let cluster =
        Cluster::start_tls(&["a", "b", "c"], |c| with_loader(c, echo_loader()), &tls).await;

    // A read through node 0 of a key node 2 owns: node 0 fetches it from node 2 over TLS.
    let loaded = cluster.key_owned_by(2, "loaded");
    let got = cluster.nodes[0]
        .client
        .get(G, loaded.clone())
        .await
        .unwrap();
    assert_eq!(got.unwrap().value, format!("value-of:{loaded}").as_bytes());

    // A write through node 1 of a key node 0 owns (forwarded over TLS, then invalidations to
    // every other node), read back through node 2.
    let written = cluster.key_owned_by(0, "written");
    cluster.nodes[1]
        .client
        .set(G, written.clone(), "over tls", None)
        .await
        .unwrap();
    let got = cluster.nodes[2]
        .client
        .get(G, written.clone())
        .await
        .unwrap();
    assert_eq!(got.unwrap().value, "over tls".as_bytes());

    // The peers really answered: node 0 fetched from the owner and never fell back to a local
    // load (which is what an unreachable owner would have caused), and only the owner loaded.
    let stats = |i: usize| cluster.nodes[i].probe.stats().groups[0].counters;
    assert_eq!(stats(0).fetches, 1);
    assert_eq!(stats(0).fallbacks, 0);
    assert_eq!(stats(0).fetch_errors, 0);
    assert_eq!(stats(0).loads, 0);
    assert_eq!(stats(2).loads, 1);
    assert_eq!(stats(1).forwarded_writes, 1);
    assert_eq!(stats(0).writes, 1);
    assert_eq!(stats(0).invalidation_failures, 0);
    assert_eq!(stats(0).invalidations_sent, 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_and_clients_of_another_ca_are_refused() {
    let ca = TestCa::new("lcache test CA");
    let tls = cluster_tls(&ca, 1);
    let cluster = Cluster::start_tls(&["solo"], |c| c, &tls).await;
    let node = &cluster.nodes[0];
    node.client.set(G, "secret", "s3cr3t", None).await.unwrap();
    let before = node.probe.stats();

    // Plain text against a TLS port: the handshake never completes.
    let plain = CacheClient::connect(&node.member.addr, quick()).await;
    match plain {
        Err(_) => {}
        Ok(client) => assert!(client.get(G, "secret").await.is_err()),
    }

    // A client trusting the right CA but presenting a certificate another CA signed: the node
    // refuses it during the handshake.
    let rogue = TestCa::new("rogue CA").issue("intruder");
    let intruder = TlsConfig::from_pem(
        rogue.cert_pem.as_bytes(),
        rogue.key_pem.as_bytes(),
        ca.pem().as_bytes(),
    )
    .unwrap();
    let refused = CacheClient::connect_tls(&node.member.addr, quick(), &intruder).await;
    match refused {
        Err(_) => {}
        Ok(client) => assert!(client.get(G, "secret").await.is_err()),
    }

    // A client that trusts another CA refuses the node itself.
    let distrustful = TestCa::new("other CA").tls("client");
    assert!(
        CacheClient::connect_tls(&node.member.addr, quick(), &distrustful)
            .await
            .is_err()
    );

    // None of them reached the cache; the legitimate client still does.
    assert_eq!(node.probe.stats(), before);
    let got = node.client.get(G, "secret").await.unwrap().unwrap();
    assert_eq!(got.value, "s3cr3t".as_bytes());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_speak_mutual_tls_with_their_flags() {
    let dir = TempDir::new("tls");
    let ca = TestCa::new("lcache test CA");
    let (node_cert, node_key, ca_file) = ca.write_files(&dir.0, "node");
    let (client_cert, client_key, _) = ca.write_files(&dir.0, "client");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let node = NodeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &path(&node_cert),
        "--tls-key",
        &path(&node_key),
        "--tls-ca",
        &path(&ca_file),
    ]);
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lcache"))
            .args(["--addr", &node.addr, "--timeout", "2s"])
            .args(args)
            .output()
            .unwrap()
    };
    let tls_args = [
        "--tls-cert".to_owned(),
        path(&client_cert),
        "--tls-key".to_owned(),
        path(&client_key),
        "--tls-ca".to_owned(),
        path(&ca_file),
    ];
    let with_tls = |args: &[&str]| {
        let mut all: Vec<&str> = tls_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(&all)
    };

    let set = with_tls(&["set", "k", "v"]);
    assert!(set.status.success(), "{set:?}");
    let get = with_tls(&["get", "k"]);
    assert_eq!(get.status.code(), Some(0), "{get:?}");
    assert_eq!(get.stdout, b"v");

    let plain = cli(&["get", "k"]);
    assert_eq!(plain.status.code(), Some(2), "{plain:?}");

    let partial = cli(&["--tls-cert", &path(&client_cert), "get", "k"]);
    assert_eq!(partial.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert!(stderr.contains("missing: key, CA"), "{stderr}");
}
