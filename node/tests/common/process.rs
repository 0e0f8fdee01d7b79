//! [`NodeProcess`]: the real `lcache-node` binary, started by a test and killed if it fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Path of the `lcache-node` binary cargo built for these tests.
pub const NODE: &str = env!("CARGO_BIN_EXE_lcache-node");

/// A running `lcache-node` process, killed if the test fails before it exits.
pub struct NodeProcess {
    pub child: Child,
    pub addr: String,
    /// Where it serves `/metrics`, once it said so (with `--metrics-listen`).
    metrics: mpsc::Receiver<String>,
    /// Where it serves RESP, once it said so (with `--resp-listen`).
    resp: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts `lcache-node` with `args` (give `--listen`; `127.0.0.1:0` picks a free port) and
    /// waits until it reports the address it serves on.
    pub fn start(args: &[&str]) -> NodeProcess {
        let mut child = Command::new(NODE)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (metrics_tx, metrics) = mpsc::channel();
        let (resp_tx, resp) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    if line.contains("serving lcache.v1.Cache") {
                        let _ = tx.send(addr);
                    } else if line.contains("serving metrics") {
                        let _ = metrics_tx.send(addr);
                    } else if line.contains("serving RESP") {
                        let _ = resp_tx.send(addr);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("lcache-node did not report its address");
        NodeProcess {
            child,
            addr,
            metrics,
            resp,
        }
    }

    /// The address of its `/metrics` endpoint (started with `--metrics-listen`).
    pub fn metrics_addr(&self) -> String {
        self.metrics
            .recv_timeout(Duration::from_secs(30))
            .expect("lcache-node did not report its metrics address")
    }

    /// The address of its RESP front door (started with `--resp-listen`).
    pub fn resp_addr(&self) -> String {
        self.resp
            .recv_timeout(Duration::from_secs(30))
            .expect("lcache-node did not report its RESP address")
    }

    /// Sends it SIGTERM (a graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait (bounded) for the process to exit and return its exit code.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(tokio::time::Instant::now() < deadline, "node did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's resident set size now, from `/proc/<pid>/status` (Linux).
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The largest resident set size the process ever had (its high-water mark, `VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a {field} line"));
        kib * 1024
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
