//! A private etcd for one test: client and peer URLs on free loopback ports, a fresh data
//! directory, killed and cleaned up on drop. Tests stay hermetic and can run in parallel.
//!
//! The binary is `$ETCD_BIN`, else `etcd` on `PATH`. If it is missing, [`EtcdServer::start`]
//! panics when `CI=true` or `LCACHE_REQUIRE_ETCD=1` (CI and `scripts/test.sh` must never skip
//! these tests) and otherwise prints a loud notice and returns `None`, so the test can return.
//!
//! Shared by `lcache-discovery`'s tests and `lcache-node`'s `etcd_*` tests (through `#[path]`).

#![allow(dead_code)] // each including test crate uses a different part

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// How long etcd may take to report healthy (a loaded 2-core CI machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd, killed (SIGKILL) and its data directory removed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    bin: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Serves `/health` over plain HTTP, whatever the client port speaks.
    metrics_port: u16,
    tls: Option<EtcdServerTls>,
    child: Option<Child>,
}

/// PEM files of an etcd serving its clients over TLS and requiring client certificates.
#[derive(Debug, Clone)]
pub struct EtcdServerTls {
    /// etcd's certificate (for 127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA client certificates must chain to.
    pub ca: PathBuf,
}

/// The etcd binary to run, if any.
fn etcd_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "lcache-etcd-{}-{n}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the etcd test directory");
    dir
}

impl EtcdServer {
    /// Start a private etcd and wait until it is healthy; `None` if etcd is not installed and
    /// neither `CI=true` nor `LCACHE_REQUIRE_ETCD=1` is set.
    pub async fn start() -> Option<EtcdServer> {
        Self::start_with(None).await
    }

    /// Like [`EtcdServer::start`], serving clients over TLS with `tls` (https:// endpoint,
    /// client certificates required).
    pub async fn start_tls(tls: EtcdServerTls) -> Option<EtcdServer> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<EtcdServerTls>) -> Option<EtcdServer> {
        let Some(bin) = etcd_binary() else {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("LCACHE_REQUIRE_ETCD").is_ok_and(|v| v == "1");
            let help = "etcd is not installed: install it with `apt-get install -y etcd-server \
                        etcd-client` (scripts/test.sh does) or point ETCD_BIN at an etcd binary";
            assert!(
                !required,
                "{help}; CI=true or LCACHE_REQUIRE_ETCD=1 forbids skipping the etcd tests"
            );
            let mut stderr = std::io::stderr();
            let _ = writeln!(stderr, "\n!!!!! SKIPPING an etcd test: {help} !!!!!\n");
            return None;
        };
        let mut last_error = String::new();
        // A port picked as free can be taken before etcd binds it: try a few times.
        for _ in 0..3 {
            let mut server = EtcdServer {
                bin: bin.clone(),
                dir: fresh_dir(),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                tls: tls.clone(),
                child: None,
            };
            match server.launch().await {
                Ok(()) => return Some(server),
                Err(err) => last_error = err,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Where etcd writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Kill etcd (SIGKILL), keeping its data directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start etcd again on the same ports and data directory, and wait until it is healthy.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.launch().await {
            panic!("etcd did not restart: {err}");
        }
    }

    async fn launch(&mut self) -> Result<(), String> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.bin);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let metrics = format!("http://127.0.0.1:{}", self.metrics_port);
        let child = command
            .arg("--name=test")
            .arg(format!("--listen-metrics-urls={metrics}"))
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "etcd exited with {status}; see {}",
                        self.log_path().display()
                    ));
                }
            }
            if healthy(self.metrics_port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "etcd not healthy within {READY_TIMEOUT:?}; see {}",
                    self.log_path().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether etcd's `/health` (on its plain-HTTP metrics port) says it is healthy (it has a
/// leader).
async fn healthy(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.ok()?;
        let body = String::from_utf8_lossy(&body);
        Some(body.contains("\"health\":\"true\""))
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            let mut stderr = std::io::stderr();
            let _ = writeln!(
                stderr,
                "etcd test directory kept for inspection: {}",
                Path::new(&self.dir).display()
            );
        }
    }
}
