//! The three-node demo reproduces the original project's: every node reads every other node's key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reads_the_keys_the_others_set_and_the_loader_runs_once() {
    let report = lcache_node::demo::run().await.unwrap();
    let ids = ["A", "B", "C"];
    for reader in ids {
        for writer in ids.iter().filter(|w| **w != reader) {
            let read = report
                .reads
                .iter()
                .find(|r| r.node == reader && r.key == format!("key-{writer}"))
                .unwrap();
            assert_eq!(
                read.value.as_deref(),
                Some(format!("value set by {writer}").as_str())
            );
        }
    }
    let loaded: Vec<_> = report
        .reads
        .iter()
        .filter(|r| r.key == "db-row-42")
        .collect();
    assert_eq!(loaded.len(), 3);
    let owner = &loaded[0].owner;
    for read in &loaded {
        assert_eq!(
            read.value.as_deref(),
            Some(format!("loaded db-row-42 on {owner}").as_str())
        );
    }
    let loads: u64 = report
        .stats
        .iter()
        .flat_map(|s| &s.groups)
        .map(|g| g.counters.loads)
        .sum();
    assert_eq!(loads, 1, "the cluster loaded db-row-42 once, on its owner");
    assert!(report.render().contains("stats A [default]"));
}
