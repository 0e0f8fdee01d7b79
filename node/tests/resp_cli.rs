//! `lcache-node --resp-listen` end to end with Redis's own command-line tools: `redis-cli`
//! (one-shot commands, a script on stdin) and a short `redis-benchmark` run.
//!
//! The tools come from Debian's `redis-tools` (`scripts/test.sh` installs it). Without them the
//! test says so and passes, unless `CI=true` or `LCACHE_REQUIRE_REDIS_TOOLS=1`, where a missing
//! tool fails it.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::process::NodeProcess;

/// A bound on every wait (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(60);

/// `name` on the PATH.
fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// The redis-tools binaries, or `None` (with a note) when they are missing and allowed to be.
fn redis_tools() -> Option<(PathBuf, PathBuf)> {
    match (tool("redis-cli"), tool("redis-benchmark")) {
        (Some(cli), Some(bench)) => Some((cli, bench)),
        _ => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("LCACHE_REQUIRE_REDIS_TOOLS").is_ok_and(|v| v == "1");
            let help = "redis-cli and redis-benchmark are not on the PATH (Debian: apt-get \
                        install redis-tools; scripts/test.sh installs it)";
            assert!(
                !required,
                "{help}; CI=true or LCACHE_REQUIRE_REDIS_TOOLS=1 forbids skipping this test"
            );
            eprintln!("skipping: {help}");
            None
        }
    }
}

/// Runs a tool to completion (bounded), feeding `stdin`.
fn run(program: &PathBuf, args: &[String], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(text.as_bytes());
    });
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{} {args:?} did not finish", program.display());
        }
    };
    writer.join().unwrap();
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn redis_cli_and_redis_benchmark_work_against_the_resp_port() {
    let Some((cli, bench)) = redis_tools() else {
        return;
    };
    let mut node = NodeProcess::start(&["--listen", "127.0.0.1:0", "--resp-listen", "127.0.0.1:0"]);
    let resp_addr = node.resp_addr();
    let resp_port = resp_addr.rsplit_once(':').unwrap().1.to_owned();
    let cli_args = |extra: &[&str]| -> Vec<String> {
        ["-h", "127.0.0.1", "-p", &resp_port]
            .iter()
            .chain(extra)
            .map(|a| (*a).to_owned())
            .collect()
    };

    // One-shot commands.
    let out = run(&cli, &cli_args(&["set", "greeting", "hello"]), "");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "OK\n");
    assert_eq!(
        stdout(&run(&cli, &cli_args(&["get", "greeting"]), "")),
        "hello\n"
    );
    assert_eq!(
        stdout(&run(&cli, &cli_args(&["--no-raw", "get", "missing"]), "")),
        "(nil)\n"
    );
    assert_eq!(
        stdout(&run(&cli, &cli_args(&["--no-raw", "hello", "3"]), "")),
        "(error) NOPROTO sorry, this protocol version is not supported\n"
    );
    let info = stdout(&run(&cli, &cli_args(&["info", "lcache"]), ""));
    assert!(info.contains("group_default:hits="), "{info}");

    // A script on stdin: one connection, every command answered in order, errors included.
    let script = "ping\nset a 1\nget a\nmget a b\nexists a b\ndel a\nbogus x\nget a\necho done\n";
    let out = run(&cli, &cli_args(&[]), script);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "PONG\nOK\n1\n1\n\n1\n1\nERR unknown command 'bogus', with args beginning with: 'x' \n\n\ndone\n"
    );

    // redis-benchmark: connects (CONFIG GET included) and completes every request.
    let out = run(
        &bench,
        &cli_args(&["-n", "2000", "-c", "4", "-t", "set,get", "--csv"]),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = stdout(&out);
    assert!(csv.contains("\"SET\"") && csv.contains("\"GET\""), "{csv}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Could not fetch server CONFIG"),
        "{stderr}"
    );

    node.terminate();
    assert_eq!(node.exit_code(PATIENCE).await, Some(0));
}
