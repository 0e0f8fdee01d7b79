//! CPU time of processes (the servers under test and the generator itself), read from
//! `/proc/PID/stat`. Linux only; elsewhere (or for a vanished process) the sample is `None`.

use std::time::Duration;

/// Linux reports `utime`/`stime` in USER_HZ ticks, which is 100 per second on every mainstream
/// architecture (it is part of the user-space ABI, independent of the kernel's HZ).
const TICKS_PER_SECOND: u64 = 100;

/// Samples the CPU time of a set of server processes and of this process.
#[derive(Debug, Clone, Default)]
pub struct CpuClock {
    server_pids: Vec<u32>,
}

/// CPU time used so far (user + system, all threads).
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Summed over the server processes; `None` if none is known or one cannot be read.
    pub server: Option<Duration>,
    /// This process.
    pub client: Option<Duration>,
}

impl CpuClock {
    /// A clock over the processes `server_pids` (may be empty).
    pub fn new(server_pids: Vec<u32>) -> Self {
        CpuClock { server_pids }
    }

    /// The CPU time used so far.
    pub fn sample(&self) -> CpuSample {
        let server = if self.server_pids.is_empty() {
            None
        } else {
            self.server_pids
                .iter()
                .map(|pid| process_cpu(&pid.to_string()))
                .sum::<Option<Duration>>()
        };
        CpuSample {
            server,
            client: process_cpu("self"),
        }
    }
}

/// User + system time of `/proc/{pid}`.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Fields 14 and 15 (`utime`, `stime`) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(
        ticks.checked_mul(1000 / TICKS_PER_SECOND)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(3000)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_own_cpu() {
        if cfg!(target_os = "linux") {
            assert!(CpuClock::new(vec![]).sample().client.is_some());
        }
    }
}
