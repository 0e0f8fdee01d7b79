//! Summaries of the rounds of every (scenario, target) pair, and the markdown report: one table
//! of throughput and latency, one of the LCache / Redis and LCache / memcached ratios.

use crate::backend::{Kind, Target};
use crate::run::RunResult;
use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// The rounds of one target in one scenario, summarised.
#[derive(Debug)]
pub struct Summary {
    /// Target label.
    pub target: String,
    /// Target protocol.
    pub kind: Kind,
    /// Throughput of every round, in ops/s.
    pub rounds: Vec<f64>,
    /// Latencies of all rounds merged, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Failed operations over all rounds.
    pub errors: u64,
    /// GET misses over all rounds.
    pub misses: u64,
    /// Server CPU per operation of every round that could measure it, in microseconds.
    pub server_us_per_op: Vec<f64>,
    /// Generator CPU per operation of every round, in microseconds.
    pub client_us_per_op: Vec<f64>,
    /// First error seen.
    pub first_error: Option<String>,
}

impl Summary {
    /// An empty summary for `target`.
    pub fn new(target: &Target) -> Result<Summary> {
        Ok(Summary {
            target: target.name.clone(),
            kind: target.kind,
            rounds: Vec::new(),
            latency: Histogram::new(3).map_err(|e| anyhow!("histogram: {e:?}"))?,
            errors: 0,
            misses: 0,
            server_us_per_op: Vec::new(),
            client_us_per_op: Vec::new(),
            first_error: None,
        })
    }

    /// Adds one round.
    pub fn add(&mut self, run: &RunResult) -> Result<()> {
        self.rounds.push(run.throughput());
        self.latency
            .add(&run.latency)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        self.errors += run.errors;
        self.misses += run.misses;
        let per_op = |cpu: Duration| cpu.as_secs_f64() * 1e6 / run.ops.max(1) as f64;
        self.server_us_per_op.extend(run.server_cpu.map(per_op));
        self.client_us_per_op.extend(run.client_cpu.map(per_op));
        if self.first_error.is_none() {
            self.first_error.clone_from(&run.first_error);
        }
        Ok(())
    }

    /// Median throughput over the rounds, in ops/s.
    pub fn median_throughput(&self) -> f64 {
        median(&self.rounds).unwrap_or(0.0)
    }

    fn latency_us(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The results of one scenario.
#[derive(Debug)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// One summary per target, in the order given.
    pub targets: Vec<Summary>,
}

/// Renders the settings, the results table and the ratios table as markdown.
pub fn markdown(settings: &str, scenarios: &[ScenarioReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{settings}\n");
    out.push_str(
        "| scenario | backend | ops/s (median) | rounds min–max | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | client CPU µs/op | errors |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for scenario in scenarios {
        for t in &scenario.targets {
            let min = t.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let max = t.rounds.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}–{} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                scenario.name,
                t.target,
                thousands(t.median_throughput()),
                thousands(if min.is_finite() { min } else { 0.0 }),
                thousands(max),
                t.latency_us(0.5),
                t.latency_us(0.99),
                t.latency_us(0.999),
                median(&t.server_us_per_op).map_or("–".to_owned(), |v| format!("{v:.1}")),
                median(&t.client_us_per_op).map_or("–".to_owned(), |v| format!("{v:.1}")),
                if t.misses > 0 {
                    format!("{} ({} misses)", t.errors, t.misses)
                } else {
                    t.errors.to_string()
                },
            );
        }
    }
    let ratios = ratio_rows(scenarios);
    if !ratios.is_empty() {
        out.push_str("\nThroughput ratios (median ops/s; > 1 means LCache is faster):\n\n");
        out.push_str("| scenario | ratio | value |\n|---|---|--:|\n");
        for (scenario, label, ratio) in ratios {
            let _ = writeln!(out, "| {scenario} | {label} | {ratio:.2} |");
        }
    }
    out
}

/// `(scenario, "lcache-1 / redis", ratio)` for every LCache target against every other target.
pub fn ratio_rows(scenarios: &[ScenarioReport]) -> Vec<(String, String, f64)> {
    let mut rows = Vec::new();
    for scenario in scenarios {
        for ours in scenario.targets.iter().filter(|t| t.kind.is_lcache()) {
            for theirs in scenario.targets.iter().filter(|t| !t.kind.is_lcache()) {
                let base = theirs.median_throughput();
                if base > 0.0 {
                    rows.push((
                        scenario.name.clone(),
                        format!("{} / {}", ours.target, theirs.target),
                        ours.median_throughput() / base,
                    ));
                }
            }
        }
    }
    rows
}

/// `123456.7` as `123,457`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_thousands() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    /// One round of `ops` operations in one second, each taking `latency_us`.
    fn round(ops: u64, latency_us: &[u64]) -> RunResult {
        let mut latency = Histogram::new(3).unwrap();
        for &us in latency_us {
            latency.record(us * 1000).unwrap();
        }
        RunResult {
            ops,
            misses: 0,
            errors: 0,
            elapsed: Duration::from_secs(1),
            latency,
            server_cpu: Some(Duration::from_millis(ops / 100)),
            client_cpu: None,
            first_error: None,
        }
    }

    fn summary(spec: &str, rounds: &[u64], latency_us: &[u64]) -> Summary {
        let mut s = Summary::new(&Target::parse(spec).unwrap()).unwrap();
        for &ops in rounds {
            s.add(&round(ops, latency_us)).unwrap();
        }
        s
    }

    #[test]
    fn markdown_rows_percentiles_and_ratios() {
        // 1000 latencies of 1..=1000 µs: p50 500, p99 990, p99.9 999.
        let latencies: Vec<u64> = (1..=1000).collect();
        let scenario = ScenarioReport {
            name: "uniform, 100 B, GET only".to_owned(),
            targets: vec![
                summary(
                    "lcache-1=lcache://127.0.0.1:1",
                    &[30_000, 10_000, 20_000],
                    &latencies,
                ),
                summary("redis=redis://127.0.0.1:2", &[40_000], &latencies),
                summary("memcached=memcached://127.0.0.1:3", &[80_000], &[7]),
            ],
        };
        let md = markdown("settings line", std::slice::from_ref(&scenario));
        assert!(
            md.starts_with("settings line\n\n| scenario | backend |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| uniform, 100 B, GET only | lcache-1 | 20,000 | 10,000–30,000 | 500 | 990 | 999 \
                 | 10.0 | – | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| uniform, 100 B, GET only | memcached | 80,000 | 80,000–80,000 | 7 | 7 | 7 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| uniform, 100 B, GET only | lcache-1 / redis | 0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| uniform, 100 B, GET only | lcache-1 / memcached | 0.25 |"),
            "{md}"
        );
        let ratios = ratio_rows(&[scenario]);
        assert_eq!(ratios.len(), 2, "only LCache over the others: {ratios:?}");
        assert!((ratios[0].2 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn no_ratios_without_a_baseline() {
        let scenario = ScenarioReport {
            name: "s".to_owned(),
            targets: vec![summary("a=lcache://127.0.0.1:1", &[1_000], &[1])],
        };
        assert!(ratio_rows(std::slice::from_ref(&scenario)).is_empty());
        assert!(!markdown("x", &[scenario]).contains("ratios"));
    }
}
