//! Running one scenario against one target: preload, warm up, measure (bounded by time or by
//! operation count), with a progress line per second (logged with `tracing`).

use crate::backend::{Conn, Target};
use crate::cpu::CpuClock;
use crate::workload::{Op, OpStream, Scenario};
use anyhow::{anyhow, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Highest latency the histograms hold (larger ones saturate), in nanoseconds.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// How long and how hard to run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Keys in the key space (all preloaded).
    pub keys: usize,
    /// Time to run before measuring.
    pub warmup: Duration,
    /// Measured time (unless `ops` is set).
    pub duration: Duration,
    /// Measured operations in total; ends the run before `duration` if reached first.
    pub ops: Option<u64>,
    /// Root seed of the workers' operation streams.
    pub seed: u64,
    /// Print a progress line per second.
    pub progress: bool,
}

/// What one measured run produced.
#[derive(Debug)]
pub struct RunResult {
    /// Operations completed successfully while measuring.
    pub ops: u64,
    /// GETs that found no value (should stay 0: every key is preloaded).
    pub misses: u64,
    /// Failed operations (not counted in `ops` nor in the latencies).
    pub errors: u64,
    /// Measured time.
    pub elapsed: Duration,
    /// Latency of every successful measured operation, in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time the target's processes used while measuring (when their pids are known).
    pub server_cpu: Option<Duration>,
    /// CPU time the load generator used while measuring.
    pub client_cpu: Option<Duration>,
    /// First error seen, if any.
    pub first_error: Option<String>,
}

impl RunResult {
    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Phases the workers follow.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Counters every worker adds to while measuring.
#[derive(Debug)]
struct Tally {
    phase: AtomicU8,
    ops: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// Opens the connections of `workers` workers to `target` and returns one handle per worker.
///
/// For a kind that multiplexes ([`Kind::multiplexes`]), `connections` connections are opened
/// (no more than `workers`) and worker `i` shares connection `i % connections`; for memcached,
/// every worker gets a connection of its own.
///
/// [`Kind::multiplexes`]: crate::backend::Kind::multiplexes
pub async fn connect_all(
    target: &Target,
    connections: usize,
    workers: usize,
    group: &str,
) -> Result<Vec<Conn>> {
    let opened = target.kind.connections_for(connections, workers);
    let mut conns = Vec::with_capacity(workers);
    for i in 0..opened {
        conns.push(target.connect(i, group).await?);
    }
    for i in opened..workers {
        let shared = conns
            .get(i % opened.max(1))
            .and_then(Conn::share)
            .ok_or_else(|| anyhow!("{}: worker {i} cannot share a connection", target.name))?;
        conns.push(shared);
    }
    Ok(conns)
}

/// Writes every key once with `value`, spread over the workers' handles. Fails on the first error.
pub async fn preload(conns: Vec<Conn>, keys: &Arc<Vec<Bytes>>, value: &Bytes) -> Result<Vec<Conn>> {
    let workers = conns.len().max(1);
    let mut tasks = Vec::with_capacity(workers);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (keys, value) = (keys.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for key in keys.iter().skip(i).step_by(workers) {
                if let Err(err) = conn.set(key, &value).await {
                    return Err(
                        err.context(format!("preloading {:?}", String::from_utf8_lossy(key)))
                    );
                }
            }
            Ok(conn)
        }));
    }
    let mut conns = Vec::with_capacity(workers);
    for task in tasks {
        conns.push(
            task.await
                .map_err(|e| anyhow!("preload task failed: {e}"))??,
        );
    }
    Ok(conns)
}

/// Runs `scenario` with one worker per handle, all at once; returns the handles and the result.
pub async fn run(
    label: &str,
    conns: Vec<Conn>,
    scenario: &Scenario,
    load: &Load,
    keys: &Arc<Vec<Bytes>>,
    cpu: &CpuClock,
) -> Result<(Vec<Conn>, RunResult)> {
    let tally = Arc::new(Tally {
        phase: AtomicU8::new(WARMUP),
        ops: AtomicU64::new(0),
        misses: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let value = crate::workload::value(scenario.value_bytes);
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let stream = OpStream::new(load.seed, i, scenario, keys.len())?;
        tasks.push(tokio::spawn(worker(
            conn,
            stream,
            keys.clone(),
            value.clone(),
            tally.clone(),
            new_histogram()?,
        )));
    }
    tokio::time::sleep(load.warmup).await;
    let cpu_start = cpu.sample();
    let start = Instant::now();
    tally.phase.store(MEASURE, Ordering::Release);
    let elapsed = control(label, &tally, load, start).await;
    tally.phase.store(STOP, Ordering::Release);
    let cpu_end = cpu.sample();
    let mut latency = new_histogram()?;
    let mut first_error = None;
    let mut conns = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (conn, hist, error) = task.await.map_err(|e| anyhow!("worker failed: {e}"))?;
        latency
            .add(&hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        first_error = first_error.or(error);
        conns.push(conn);
    }
    let result = RunResult {
        ops: tally.ops.load(Ordering::Acquire),
        misses: tally.misses.load(Ordering::Acquire),
        errors: tally.errors.load(Ordering::Acquire),
        elapsed,
        latency,
        server_cpu: cpu_end
            .server
            .zip(cpu_start.server)
            .map(|(e, s)| e.saturating_sub(s)),
        client_cpu: cpu_end
            .client
            .zip(cpu_start.client)
            .map(|(e, s)| e.saturating_sub(s)),
        first_error,
    };
    Ok((conns, result))
}

/// Waits until the measured time is over or the operation budget is spent, printing progress;
/// returns the measured time.
async fn control(label: &str, tally: &Tally, load: &Load, start: Instant) -> Duration {
    let end = start + load.duration;
    let tick = Duration::from_millis(if load.ops.is_some() { 10 } else { 1000 });
    let mut last_print = start;
    let mut last_ops = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep_until((now + tick).min(end)).await;
        let ops = tally.ops.load(Ordering::Relaxed);
        if load.ops.is_some_and(|budget| ops >= budget) {
            break;
        }
        let now = Instant::now();
        if load.progress && now.duration_since(last_print) >= Duration::from_secs(1) {
            let secs = now.duration_since(last_print).as_secs_f64();
            tracing::info!(
                "{label}: {:>4.0}s {:>10.0} ops/s  errors {}",
                now.duration_since(start).as_secs_f64(),
                (ops - last_ops) as f64 / secs,
                tally.errors.load(Ordering::Relaxed),
            );
            last_print = now;
            last_ops = ops;
        }
    }
    start.elapsed()
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

/// One closed-loop worker: one operation of its own in flight at a time (other workers' may
/// share the connection).
async fn worker(
    mut conn: Conn,
    mut stream: OpStream,
    keys: Arc<Vec<Bytes>>,
    value: Bytes,
    tally: Arc<Tally>,
    mut hist: Histogram<u64>,
) -> (Conn, Histogram<u64>, Option<String>) {
    let mut first_error = None;
    loop {
        let phase = tally.phase.load(Ordering::Acquire);
        if phase == STOP {
            break;
        }
        let op = stream.next_op();
        let began = Instant::now();
        let outcome = match op {
            Op::Get(k) => conn.get(&keys[k]).await,
            Op::Set(k) => conn.set(&keys[k], &value).await.map(|()| true),
        };
        let took = began.elapsed();
        if tally.phase.load(Ordering::Acquire) != MEASURE || phase != MEASURE {
            continue;
        }
        match outcome {
            Ok(hit) => {
                hist.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
                tally.ops.fetch_add(1, Ordering::Relaxed);
                if !hit {
                    tally.misses.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(err) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert_with(|| format!("{err:#}"));
                // Do not spin on a broken connection.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    (conn, hist, first_error)
}
