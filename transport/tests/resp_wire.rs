//! The RESP front door at the byte level, over in-memory connections whose writes are counted:
//! pipelining (every buffered request answered, in one write), handler errors as reply codes,
//! bounded output, copies of keys and values, the connection cap and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Fake, BIG, BLOCKED, BROKEN, EXHAUSTED, GROUP};
use lcache_transport::observe::{Outcome, Rpc};
use lcache_transport::resp::{serve_with_incoming, RespConfig};
use lcache_transport::ServeError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// How long a test waits for any one answer before failing (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(10);

/// The server end of an in-memory connection, counting the writes the server makes and
/// signalling each read that returned bytes.
struct CountingIo {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
    read: Arc<Notify>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.read.notify_one();
        }
        polled
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(_))) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A RESP server over in-memory connections.
struct Door {
    connect: mpsc::UnboundedSender<Result<CountingIo, io::Error>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

/// The client end of one connection, the server's write count on it, and a signal of the
/// server's reads.
struct Conn {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
    read: Arc<Notify>,
}

impl Door {
    fn start(handler: Arc<Fake>, config: RespConfig) -> Door {
        let (connect, incoming) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_incoming(
            handler,
            config,
            UnboundedReceiverStream::new(incoming),
            async move {
                let _ = stopped.await;
            },
        ));
        Door {
            connect,
            stop: Some(stop),
            task,
        }
    }

    fn config(group: &str) -> RespConfig {
        RespConfig {
            group: group.to_owned(),
            ..RespConfig::default()
        }
    }

    fn connect(&self) -> Conn {
        let (client, server) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let read = Arc::new(Notify::new());
        self.connect
            .send(Ok(CountingIo {
                inner: server,
                writes: writes.clone(),
                read: read.clone(),
            }))
            .unwrap();
        Conn {
            io: client,
            writes,
            read,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// Reads exactly `expected.len()` bytes and compares them.
    async fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(PATIENCE, self.io.read_exact(&mut got))
            .await
            .expect("reply arrives")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// Reads until the server closes the connection; returns what came before.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, self.io.read_to_end(&mut rest))
            .await
            .expect("server closes the connection")
            .unwrap();
        rest
    }

    /// Waits until the server has read bytes from this connection.
    async fn server_read(&self) {
        tokio::time::timeout(PATIENCE, self.read.notified())
            .await
            .expect("the server reads");
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Sends `SET key value` then `GET key` as two requests, each awaiting its answer.
    async fn set_then_get(&mut self, key: &str, value: &str) {
        self.send(&command(&[b"SET", key.as_bytes(), value.as_bytes()]))
            .await;
        self.expect(b"+OK\r\n").await;
        self.send(&command(&[b"GET", key.as_bytes()])).await;
        self.expect(format!("${}\r\n{value}\r\n", value.len()).as_bytes())
            .await;
    }

    /// The `INFO stats` field `name`, as a number.
    async fn info_stat(&mut self, name: &str) -> u64 {
        self.send(b"INFO stats\r\n").await;
        let mut info = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.io.read(&mut info))
            .await
            .expect("INFO answers")
            .unwrap();
        let info = String::from_utf8_lossy(&info[..n]).to_string();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {info}"))
            .parse()
            .unwrap()
    }
}

/// `args` as a multibulk request.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[tokio::test]
async fn a_pipeline_is_answered_in_order_in_one_write() {
    let fake = Fake::new();
    let door = Door::start(fake.clone(), Door::config(GROUP));
    let mut conn = door.connect();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..16 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        batch.extend(command(&[b"SET", key.as_bytes(), value.as_bytes()]));
        batch.extend(command(&[b"GET", key.as_bytes()]));
        expected.extend(format!("+OK\r\n${}\r\n{value}\r\n", value.len()).as_bytes());
    }
    batch.extend(b"PING\r\n");
    expected.extend(b"+PONG\r\n");
    conn.send(&batch).await;
    conn.expect(&expected).await;
    assert_eq!(conn.writes(), 1, "33 answers, one write");
    // The batch was reported to the handler once its answers were written: one report per RPC
    // and outcome, with the batch's count (PING is not a cache request). A second batch, a miss
    // and an empty key (refused as invalid), is answered after the first was reported.
    let mut second = command(&[b"GET", b"absent"]);
    second.extend(command(&[b"GET", b""]));
    conn.send(&second).await;
    let refused = format!("-ERR invalid argument: key must not be empty (group {GROUP:?})\r\n");
    conn.expect(format!("$-1\r\n{refused}").as_bytes()).await;
    assert_eq!(
        fake.observed.lock()[..2],
        [(Rpc::Get, Outcome::Ok, 16), (Rpc::Set, Outcome::Ok, 16)]
    );
    door.shutdown().await;
    assert_eq!(
        fake.observed.lock()[2..],
        [
            (Rpc::Get, Outcome::Miss, 1),
            (Rpc::Get, Outcome::Invalid, 1)
        ]
    );
}

#[tokio::test]
async fn a_request_split_across_reads_is_answered_once_complete() {
    let fake = Fake::new();
    let door = Door::start(fake.clone(), Door::config(GROUP));
    let mut conn = door.connect();
    let request = command(&[b"SET", b"key", b"a value"]);
    let (head, tail) = request.split_at(11);
    conn.send(head).await;
    conn.server_read().await;
    conn.send(tail).await;
    conn.expect(b"+OK\r\n").await;
    assert_eq!(fake.data.lock().len(), 1);
    door.shutdown().await;
}

#[tokio::test]
async fn stored_keys_and_values_are_copies_not_views_of_the_read_buffer() {
    let fake = Fake::new();
    let door = Door::start(fake.clone(), Door::config(GROUP));
    let mut conn = door.connect();
    conn.send(&command(&[b"SET", b"key", &[b'x'; 300]])).await;
    conn.expect(b"+OK\r\n").await;
    // The connection (and its read buffer) is still open: a slice of that buffer would share
    // its allocation; a copy is the only owner of its bytes.
    {
        let data = fake.data.lock();
        let (key, (value, _)) = data.iter().next().unwrap();
        assert!(key.is_unique(), "the key owns its bytes");
        assert!(value.is_unique(), "the value owns its bytes");
    }
    door.shutdown().await;
}

#[tokio::test]
async fn handler_errors_become_error_replies_and_the_connection_goes_on() {
    let cases = [
        (EXHAUSTED, "-BUSY overloaded: too many waiters\r\n"),
        (BROKEN, "-ERR internal error: loader failed\r\n"),
        ("nope", "-ERR unknown group \"nope\"\r\n"),
    ];
    for (group, expected) in cases {
        let door = Door::start(Fake::new(), Door::config(group));
        let mut conn = door.connect();
        conn.send(&command(&[b"GET", b"k"])).await;
        conn.expect(expected.as_bytes()).await;
        conn.send(b"PING\r\n").await;
        conn.expect(b"+PONG\r\n").await;
        door.shutdown().await;
    }
}

#[tokio::test]
async fn the_handler_gets_the_configured_deadline() {
    let fake = Fake::new();
    let config = RespConfig {
        request_timeout: Duration::from_millis(1234),
        ..Door::config(GROUP)
    };
    let door = Door::start(fake.clone(), config);
    let mut conn = door.connect();
    conn.send(&command(&[b"GET", b"k"])).await;
    conn.expect(b"$-1\r\n").await;
    let deadline = fake.last_seen().deadline.expect("a deadline");
    assert!(
        deadline <= Duration::from_millis(1234) && deadline > Duration::from_millis(1000),
        "{deadline:?}"
    );
    assert!(!fake.last_seen().forwarded, "a RESP client is never a peer");
    door.shutdown().await;
}

#[tokio::test]
async fn a_large_mget_reply_is_written_in_bounded_pieces() {
    let value_bytes = 100 * 1024;
    let door = Door::start(Fake::with_big(value_bytes), Door::config(BIG));
    let mut conn = door.connect();
    conn.send(&command(&[b"MGET", b"a", b"b", b"c", b"d", b"e"]))
        .await;
    let mut expected = b"*5\r\n".to_vec();
    for _ in 0..5 {
        expected.extend(format!("${value_bytes}\r\n").as_bytes());
        expected.extend(vec![7u8; value_bytes]);
        expected.extend(b"\r\n");
    }
    conn.expect(&expected).await;
    assert!(
        conn.writes() >= 5,
        "each value went out once pending replies passed the flush threshold, got {} writes",
        conn.writes()
    );
    door.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_told_and_closed() {
    let config = RespConfig {
        max_connections: 1,
        ..Door::config(GROUP)
    };
    let door = Door::start(Fake::new(), config);
    let mut first = door.connect();
    first.send(b"PING\r\n").await;
    first.expect(b"+PONG\r\n").await;
    let mut second = door.connect();
    assert_eq!(
        second.until_closed().await,
        b"-ERR max number of clients reached\r\n"
    );
    // The first one is untouched; once it leaves, a new one is served.
    first.send(b"INFO stats\r\n").await;
    let mut info = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, first.io.read(&mut info))
        .await
        .unwrap()
        .unwrap();
    let info = String::from_utf8_lossy(&info[..n]).to_string();
    assert!(info.contains("rejected_connections:1\r\n"), "{info}");
    first.send(b"QUIT\r\n").await;
    assert_eq!(first.until_closed().await, b"+OK\r\n");
    let mut later = door.connect();
    // The slot is released when the first session ends; the new connection may race it.
    let mut served = false;
    for _ in 0..100 {
        later.send(b"PING\r\n").await;
        let mut reply = vec![0u8; 64];
        let n = tokio::time::timeout(PATIENCE, later.io.read(&mut reply))
            .await
            .unwrap()
            .unwrap();
        if &reply[..n] == b"+PONG\r\n" {
            served = true;
            break;
        }
        assert_eq!(&reply[..n], b"-ERR max number of clients reached\r\n");
        later = door.connect();
    }
    assert!(served, "a slot frees up once the first client left");
    door.shutdown().await;
}

#[tokio::test]
async fn shutdown_answers_what_was_read_then_closes() {
    let fake = Fake::new();
    let door = Door::start(fake.clone(), Door::config(BLOCKED));
    let mut busy = door.connect();
    let mut idle = door.connect();
    idle.send(b"PING\r\n").await;
    idle.expect(b"+PONG\r\n").await;
    let entered = fake.entered.notified();
    busy.send(&command(&[b"GET", b"k"])).await;
    tokio::time::timeout(PATIENCE, entered)
        .await
        .expect("the GET reached the handler");
    let stop = tokio::spawn(door.shutdown());
    // The idle connection is closed; the busy one still gets its answer first.
    assert_eq!(idle.until_closed().await, b"");
    fake.release.notify_one();
    assert_eq!(busy.until_closed().await, b"$-1\r\n");
    tokio::time::timeout(PATIENCE, stop).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn commands_read_together_share_one_deadline_from_their_arrival() {
    let fake = Fake::new();
    let door = Door::start(fake.clone(), Door::config(BLOCKED));
    let mut conn = door.connect();
    let mut batch = command(&[b"GET", b"a"]);
    batch.extend(command(&[b"GET", b"b"]));
    conn.send(&batch).await;
    // The first command takes a second; the second, read with it, has a second less.
    fake.entered.notified().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    fake.release.notify_one();
    fake.entered.notified().await;
    fake.release.notify_one();
    conn.expect(b"$-1\r\n$-1\r\n").await;
    // A command read later gets the whole timeout from its own arrival.
    conn.send(&command(&[b"GET", b"c"])).await;
    fake.entered.notified().await;
    fake.release.notify_one();
    conn.expect(b"$-1\r\n").await;
    let remaining: Vec<_> = fake.seen.lock().iter().map(|s| s.deadline).collect();
    let timeout = RespConfig::default().request_timeout;
    let second = Duration::from_secs(1);
    assert_eq!(
        remaining,
        vec![Some(timeout), Some(timeout - second), Some(timeout)]
    );
    door.shutdown().await;
}

#[tokio::test]
async fn a_lone_client_never_keeps_the_worker_lingering() {
    let door = Door::start(Fake::new(), Door::config(GROUP));
    let mut conn = door.connect();
    let max_turns = RespConfig::default().linger_turns;
    assert!(max_turns > 0, "lingering is on by default");
    for i in 0..50 {
        conn.set_then_get(&format!("k{i}"), "v").await;
        // The client thinks a while: a server that lingered would take its turns now.
        for _ in 0..2 * max_turns {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(conn.info_stat("lcache_resp_linger_turns").await, 0);
    door.shutdown().await;
}

/// `clients` clients each send `rounds` of `SET` then `GET` of keys of their own, at the same
/// time, each checking every answer; returns their connections, still open, once all are done.
async fn clients_together(door: &Door, clients: usize, rounds: usize) -> Vec<Conn> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut conn = door.connect();
            tokio::spawn(async move {
                for i in 0..rounds {
                    conn.set_then_get(&format!("c{c}k{i}"), &format!("v{c}.{i}"))
                        .await;
                }
                conn
            })
        })
        .collect();
    let mut conns = Vec::new();
    for task in tasks {
        let conn = tokio::time::timeout(PATIENCE, task).await;
        conns.push(conn.expect("the client finishes").unwrap());
    }
    conns
}

#[tokio::test]
async fn clients_answered_together_linger_and_every_request_is_answered_in_order() {
    let door = Door::start(Fake::new(), Door::config(GROUP));
    let max_turns = u64::from(RespConfig::default().linger_turns);
    assert_eq!(linger_max_turns(&door).await, max_turns, "on one worker");
    let mut conns = clients_together(&door, 8, 100).await;
    let turns = conns[0].info_stat("lcache_resp_linger_turns").await;
    assert!(turns > 0, "connections answered together linger");
    assert!(
        turns <= 8 * 200 * max_turns,
        "at most {max_turns} turns per answer, got {turns}"
    );
    door.shutdown().await;
    // Turned off, nothing lingers.
    let off = RespConfig {
        linger_turns: 0,
        ..Door::config(GROUP)
    };
    let door = Door::start(Fake::new(), off);
    let mut conns = clients_together(&door, 8, 20).await;
    assert_eq!(conns[0].info_stat("lcache_resp_linger_turns").await, 0);
    door.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_a_runtime_of_several_workers_never_linger() {
    let door = Door::start(Fake::new(), Door::config(GROUP));
    assert_eq!(linger_max_turns(&door).await, 0, "off on two workers");
    let mut conns = clients_together(&door, 8, 100).await;
    assert_eq!(conns[0].info_stat("lcache_resp_linger_turns").await, 0);
    door.shutdown().await;
}

/// The `lcache_resp_linger_max_turns` a new connection reads from `INFO`.
async fn linger_max_turns(door: &Door) -> u64 {
    door.connect()
        .info_stat("lcache_resp_linger_max_turns")
        .await
}
