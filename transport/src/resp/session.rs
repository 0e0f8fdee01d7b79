//! One RESP connection: read what the client sent, answer every complete request in it in order,
//! send all the answers in one write, read again.
//!
//! No task is spawned per command and the read and write buffers live as long as the connection
//! (shrunk back after an unusually large request or reply). Commands of one connection run one
//! after another, as in Redis, so a pipeline's `SET k v` is visible to its next `GET k`.
//! Arguments are copied out of the read buffer before they reach the handler: a stored key or
//! value owns its bytes and never keeps a network buffer alive.

use std::io;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use lcache_core::owned::owned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::convert::validate_key;
use crate::deadline::Deadline;
use crate::error::ServiceError;
use crate::observe::{BatchTimer, Outcome, Rpc};
use crate::resp::codec::{Args, Parsed, Reply, RespCodec};
use crate::resp::commands::{self, parse_integer, quoted, CommandError, Op, Spec, COMMANDS};
use crate::resp::door::{FrontDoor, REDIS_COMPAT_VERSION};
use crate::resp::info;
use crate::resp::linger::Linger;
use crate::server::CacheHandler;
use crate::types::{DeleteRequest, GetRequest, SetRequest};

/// Room reserved in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies are written out as soon as this many bytes are pending, even mid-batch, so a pipeline
/// of large values (or an `MGET` of many keys) never buffers more than this plus one value.
const FLUSH_THRESHOLD_BYTES: usize = 64 * 1024;
/// A buffer that grew beyond this for one large request or reply is given back once empty.
const KEEP_BUFFER_BYTES: usize = 256 * 1024;

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// What the client sent and how far it is parsed.
struct Input {
    codec: RespCodec,
    buf: BytesMut,
}

/// The state of one client connection.
pub(crate) struct Session<H: CacheHandler, IO> {
    handler: Arc<H>,
    door: Arc<FrontDoor>,
    io: IO,
    input: Input,
    wbuf: BytesMut,
    /// `CLIENT ID`.
    id: u64,
    /// `CLIENT SETNAME`.
    name: Option<String>,
    /// When the commands being answered arrived, and their deadline: one of each per batch
    /// (the requests one read brought in arrived together), so a pipelined command does not
    /// read the clock.
    arrived: Instant,
    deadline: Deadline,
    /// The requests of the batch being answered, reported to the handler with one clock read
    /// once their answers are written.
    timings: BatchTimer,
    /// Whether to yield a few turns before waiting for the next request.
    linger: Linger,
}

/// A session dropped mid-batch (its task cancelled) reports what it served, and the request it
/// was serving as cancelled.
impl<H: CacheHandler, IO> Drop for Session<H, IO> {
    fn drop(&mut self) {
        self.timings.abandon(&*self.handler, self.arrived);
    }
}

impl<H: CacheHandler, IO: AsyncRead + AsyncWrite + Unpin> Session<H, IO> {
    pub(crate) fn new(handler: Arc<H>, door: Arc<FrontDoor>, io: IO, id: u64) -> Self {
        let codec = RespCodec::new(door.config.limits);
        let (arrived, deadline) = arrival(&door);
        let linger = Linger::new(door.linger_turns, door.stats.answered());
        Session {
            handler,
            door,
            io,
            input: Input {
                codec,
                buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            },
            wbuf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            id,
            name: None,
            arrived,
            deadline,
            timings: BatchTimer::default(),
            linger,
        }
    }

    /// Serves the connection until the client leaves (EOF, `QUIT`, a protocol error) or
    /// `shutdown` is cancelled; requests already read are answered before it closes.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        if let Err(err) = self.serve(shutdown).await {
            tracing::debug!(client = self.id, error = %err, "RESP connection ended by an I/O error");
        }
        if let Err(err) = self.io.shutdown().await {
            tracing::trace!(client = self.id, error = %err, "RESP connection did not close cleanly");
        }
    }

    async fn serve(&mut self, shutdown: CancellationToken) -> io::Result<()> {
        // One wait for cancellation per connection, polled again on every read.
        let mut cancelled = pin!(shutdown.cancelled());
        loop {
            let (flow, answered) = self.answer_buffered().await?;
            self.flush().await?;
            self.timings.report(&*self.handler, self.arrived);
            self.linger.answered(answered, self.door.stats.answered());
            if flow == Flow::Close {
                return Ok(());
            }
            if self.input.buf.len() >= self.door.config.max_query_buffer_bytes {
                tracing::debug!(
                    client = self.id,
                    limit = self.door.config.max_query_buffer_bytes,
                    "closing a RESP client whose request exceeds the query buffer limit"
                );
                let text = format!(
                    "ERR Protocol error: request larger than the query buffer limit of {} bytes",
                    self.door.config.max_query_buffer_bytes
                );
                Reply::Error(&text).write_to(&mut self.wbuf);
                return self.flush().await;
            }
            if self.input.buf.is_empty() && self.input.buf.capacity() > KEEP_BUFFER_BYTES {
                self.input.buf = BytesMut::new();
            }
            self.input.buf.reserve(READ_CHUNK_BYTES);
            let mut turns = 0;
            let read = loop {
                tokio::select! {
                    biased;
                    () = &mut cancelled => return Ok(()),
                    read = self.io.read_buf(&mut self.input.buf) => break read?,
                    () = tokio::task::yield_now(), if self.linger.lingering() => {
                        turns += 1;
                        self.linger.turn_taken();
                    }
                }
            };
            self.door.stats.lingered(turns);
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Answers every complete request in the read buffer, in order, then drops them from it;
    /// says how many it answered.
    async fn answer_buffered(&mut self) -> io::Result<(Flow, u64)> {
        // Moved out while commands run, so they can borrow their arguments from it.
        let mut input = std::mem::replace(
            &mut self.input,
            Input {
                codec: RespCodec::new(self.door.config.limits),
                buf: BytesMut::new(),
            },
        );
        (self.arrived, self.deadline) = arrival(&self.door);
        let mut pos = 0;
        let mut answered = 0u64;
        let flow = loop {
            let rest = &input.buf[pos..];
            match input.codec.parse(rest) {
                Ok(Parsed::Request(len)) => {
                    answered += 1;
                    pos += len;
                    if self.execute(input.codec.args(rest)).await? == Flow::Close {
                        break Flow::Close;
                    }
                }
                Ok(Parsed::Skipped(len)) => pos += len,
                Ok(Parsed::Incomplete) => break Flow::Continue,
                Err(err) => {
                    tracing::debug!(client = self.id, error = %err, "closing a RESP client that broke the protocol");
                    Reply::Error(&format!("ERR {err}")).write_to(&mut self.wbuf);
                    break Flow::Close;
                }
            }
        };
        input.buf.advance(pos);
        self.input = input;
        self.door.stats.commands_processed(answered);
        Ok((flow, answered))
    }

    /// Writes out every pending reply.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        if self.wbuf.capacity() > KEEP_BUFFER_BYTES {
            self.wbuf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        }
        Ok(())
    }

    /// Writes out pending replies if they reached [`FLUSH_THRESHOLD_BYTES`].
    async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.wbuf.len() >= FLUSH_THRESHOLD_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    fn reply(&mut self, reply: Reply<'_>) {
        reply.write_to(&mut self.wbuf);
    }

    fn refuse(&mut self, err: &CommandError) {
        self.reply(Reply::Error(&err.to_string()));
    }

    fn fail(&mut self, err: &ServiceError) {
        let text = service_error_text(err);
        self.reply(Reply::Error(&text));
    }

    /// Runs one request and appends its reply.
    async fn execute(&mut self, request: Args<'_>) -> io::Result<Flow> {
        let name = request.arg(0);
        let Some(spec) = commands::lookup(name) else {
            self.refuse(&CommandError::unknown(name, request.args_from(1)));
            return Ok(Flow::Continue);
        };
        if !spec.arity_ok(request.len()) {
            self.refuse(&CommandError::Arity(spec.name.to_owned()));
            return Ok(Flow::Continue);
        }
        match spec.op {
            Op::Get => self.get(request.arg(1)).await,
            Op::Set => self.set(request).await,
            Op::Del => self.del(request).await,
            Op::Exists => self.exists(request).await,
            Op::MGet => self.mget(request).await?,
            Op::Ping => match request.len() {
                1 => self.reply(Reply::Simple("PONG")),
                2 => self.reply(Reply::Bulk(request.arg(1))),
                _ => self.refuse(&CommandError::Arity(spec.name.to_owned())),
            },
            Op::Echo => self.reply(Reply::Bulk(request.arg(1))),
            Op::Quit => {
                self.reply(Reply::Simple("OK"));
                return Ok(Flow::Close);
            }
            Op::Info => self.info(request).await,
            Op::Command => self.command(request),
            Op::Client => self.client(request),
            Op::Hello => self.hello(request),
            Op::Select => match parse_integer(request.arg(1)) {
                Ok(0) => self.reply(Reply::Simple("OK")),
                Ok(_) => self.reply(Reply::Error("ERR DB index is out of range")),
                Err(err) => self.refuse(&err),
            },
            Op::Auth => self.reply(Reply::Error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            )),
            Op::Config => self.config(request),
        }
        Ok(Flow::Continue)
    }

    /// A key copied out of the read buffer, refused if empty (as the gRPC API does).
    fn key(&self, key: &[u8]) -> Result<Bytes, ServiceError> {
        validate_key(&self.door.config.group, key)?;
        Ok(Bytes::copy_from_slice(key))
    }

    /// The value of `key` in the front door's group: `Some`, `None` on a miss (timed into the
    /// batch as one get).
    async fn lookup(&mut self, key: &[u8]) -> Result<Option<Bytes>, ServiceError> {
        self.timings.begin(Rpc::Get);
        let result = match self.key(key) {
            Ok(key) => {
                let request = GetRequest {
                    group: self.door.config.group.clone(),
                    key,
                    forwarded: false,
                };
                self.handler.get(request, self.deadline, self.arrived).await
            }
            Err(err) => Err(err),
        };
        self.timings
            .end(Rpc::Get, Outcome::of(&result, Option::is_none));
        Ok(result?.map(|fetched| fetched.value))
    }

    async fn get(&mut self, key: &[u8]) {
        let found = self.lookup(key).await;
        match found {
            Ok(Some(value)) => self.reply(Reply::Bulk(&value)),
            Ok(None) => self.reply(Reply::Nil),
            Err(err) => self.fail(&err),
        }
    }

    async fn set(&mut self, request: Args<'_>) {
        let ttl = match commands::set_ttl(request.args_from(3)) {
            Ok(ttl) => ttl,
            Err(err) => return self.refuse(&err),
        };
        self.timings.begin(Rpc::Set);
        let result = match self.key(request.arg(1)) {
            Ok(key) => {
                let set = SetRequest {
                    group: self.door.config.group.clone(),
                    key,
                    value: owned(request.arg(2)),
                    ttl,
                    forwarded: false,
                };
                self.handler.set(set, self.deadline, self.arrived).await
            }
            Err(err) => Err(err),
        };
        self.timings.end(Rpc::Set, Outcome::of(&result, |_| false));
        match result {
            Ok(()) => self.reply(Reply::Simple("OK")),
            Err(err) => self.fail(&err),
        }
    }

    /// `DEL k...`: the number of keys whose owner held them. Keys are deleted one after another;
    /// the first failure is the reply (keys before it are deleted).
    async fn del(&mut self, request: Args<'_>) {
        let mut deleted = 0i64;
        for key in request.args_from(1) {
            self.timings.begin(Rpc::Delete);
            let result = match self.key(key) {
                Ok(key) => {
                    let delete = DeleteRequest {
                        group: self.door.config.group.clone(),
                        key,
                        forwarded: false,
                    };
                    self.handler
                        .delete(delete, self.deadline, self.arrived)
                        .await
                }
                Err(err) => Err(err),
            };
            self.timings
                .end(Rpc::Delete, Outcome::of(&result, |_| false));
            match result {
                Ok(existed) => deleted += i64::from(existed),
                Err(err) => return self.fail(&err),
            }
        }
        self.reply(Reply::Integer(deleted));
    }

    /// `EXISTS k...`: how many of the keys a `GET` would find (a key named twice counts twice, as
    /// in Redis). Like `GET`, it goes to the key's owner and may run the group's loader.
    async fn exists(&mut self, request: Args<'_>) {
        let mut found = 0i64;
        for key in request.args_from(1) {
            let value = self.lookup(key).await;
            match value {
                Ok(value) => found += i64::from(value.is_some()),
                Err(err) => return self.fail(&err),
            }
        }
        self.reply(Reply::Integer(found));
    }

    /// `MGET k...`: one element per key, nil on a miss, an error element for a key that failed
    /// (RESP2 allows errors inside arrays, as in `EXEC` replies). Elements are written out as
    /// they come, so the reply is never buffered whole.
    async fn mget(&mut self, request: Args<'_>) -> io::Result<()> {
        self.reply(Reply::Array(request.len() - 1));
        for key in request.args_from(1) {
            let value = self.lookup(key).await;
            match value {
                Ok(Some(value)) => self.reply(Reply::Bulk(&value)),
                Ok(None) => self.reply(Reply::Nil),
                Err(err) => self.fail(&err),
            }
            self.flush_if_full().await?;
        }
        Ok(())
    }

    async fn info(&mut self, request: Args<'_>) {
        self.timings.begin(Rpc::Stats);
        let result = self.handler.stats(None).await;
        self.timings
            .end(Rpc::Stats, Outcome::of(&result, |_| false));
        let stats = match result {
            Ok(stats) => stats,
            Err(err) => return self.fail(&err),
        };
        let sections: Vec<&[u8]> = request.args_from(1).collect();
        let text = info::render(&sections, &stats, &self.door);
        self.reply(Reply::Bulk(text.as_bytes()));
    }

    /// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name...`, `COMMAND DOCS [name...]`.
    fn command(&mut self, request: Args<'_>) {
        if request.len() == 1 {
            self.reply(Reply::Array(COMMANDS.len()));
            for spec in COMMANDS {
                self.command_entry(spec);
            }
            return;
        }
        let sub = request.arg(1).to_ascii_uppercase();
        match sub.as_slice() {
            b"COUNT" if request.len() == 2 => {
                self.reply(Reply::Integer(i64::try_from(COMMANDS.len()).unwrap_or(0)));
            }
            b"INFO" => {
                self.reply(Reply::Array(request.len() - 2));
                for name in request.args_from(2) {
                    match commands::lookup(name) {
                        Some(spec) => self.command_entry(spec),
                        None => self.reply(Reply::Nil),
                    }
                }
            }
            // No documentation to offer: an empty map (a flat array in RESP2).
            b"DOCS" => self.reply(Reply::Array(0)),
            b"COUNT" => self.refuse(&CommandError::Arity("command|count".into())),
            _ => self.refuse(&CommandError::UnknownSubcommand {
                sub: quoted(request.arg(1)),
                command: "COMMAND",
            }),
        }
    }

    /// One command's description, in Redis 7's ten-field layout.
    fn command_entry(&mut self, spec: &Spec) {
        self.reply(Reply::Array(10));
        self.reply(Reply::Bulk(spec.name.as_bytes()));
        self.reply(Reply::Integer(spec.arity));
        self.reply(Reply::Array(spec.flags.len()));
        for flag in spec.flags {
            self.reply(Reply::Simple(flag));
        }
        self.reply(Reply::Integer(spec.first_key));
        self.reply(Reply::Integer(spec.last_key));
        self.reply(Reply::Integer(spec.key_step));
        // ACL categories, tips, key specs, subcommands: none.
        for _ in 0..4 {
            self.reply(Reply::Array(0));
        }
    }

    /// The `CLIENT` subcommands client libraries send when they connect, and a few to look.
    fn client(&mut self, request: Args<'_>) {
        let sub = request.arg(1).to_ascii_uppercase();
        match (sub.as_slice(), request.len()) {
            (b"ID", 2) => self.reply(Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX))),
            (b"GETNAME", 2) => match self.name.take() {
                Some(name) => {
                    self.reply(Reply::Bulk(name.as_bytes()));
                    self.name = Some(name);
                }
                None => self.reply(Reply::Nil),
            },
            (b"SETNAME", 3) => {
                let name = request.arg(2);
                if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                    self.reply(Reply::Error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                } else {
                    self.name = (!name.is_empty()).then(|| quoted(name));
                    self.reply(Reply::Simple("OK"));
                }
            }
            // Library name and version (redis-py, redis-rs, go-redis send them): accepted.
            (b"SETINFO", 4) => self.reply(Reply::Simple("OK")),
            (b"NO-EVICT" | b"NO-TOUCH", 3) => self.reply(Reply::Simple("OK")),
            (b"INFO", 2) => {
                let text = self.client_line();
                self.reply(Reply::Bulk(text.as_bytes()));
            }
            (b"LIST", _) => {
                // Only this connection: other connections' state is theirs.
                let text = self.client_line();
                self.reply(Reply::Bulk(text.as_bytes()));
            }
            (
                b"ID" | b"GETNAME" | b"SETNAME" | b"SETINFO" | b"NO-EVICT" | b"NO-TOUCH" | b"INFO",
                _,
            ) => {
                let name = format!("client|{}", String::from_utf8_lossy(&sub).to_lowercase());
                self.refuse(&CommandError::Arity(name));
            }
            _ => self.refuse(&CommandError::UnknownSubcommand {
                sub: quoted(request.arg(1)),
                command: "CLIENT",
            }),
        }
    }

    fn client_line(&self) -> String {
        format!(
            "id={} name={} db=0 resp=2 lib=lcache\n",
            self.id,
            self.name.as_deref().unwrap_or("")
        )
    }

    /// `HELLO [2 [SETNAME name]]`: the server's description; protocol 3 is refused (as by a
    /// Redis without RESP3), and so is `AUTH` (there is no password to check).
    fn hello(&mut self, request: Args<'_>) {
        if request.len() >= 2 {
            match parse_integer(request.arg(1)) {
                Ok(2) => {}
                Ok(3) => {
                    return self.reply(Reply::Error(
                        "NOPROTO sorry, this protocol version is not supported",
                    ))
                }
                Ok(_) => return self.reply(Reply::Error("NOPROTO unsupported protocol version")),
                Err(_) => {
                    return self.reply(Reply::Error(
                        "ERR Protocol version is not an integer or out of range",
                    ))
                }
            }
        }
        let mut options = request.args_from(2);
        let mut name = None;
        while let Some(option) = options.next() {
            match (option.to_ascii_uppercase().as_slice(), options.next()) {
                (b"SETNAME", Some(value)) => name = Some(quoted(value)),
                (b"AUTH", Some(_)) => {
                    return self.reply(Reply::Error(
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    ))
                }
                _ => {
                    let text = format!("ERR Syntax error in HELLO option '{}'", quoted(option));
                    return self.reply(Reply::Error(&text));
                }
            }
        }
        if name.is_some() {
            self.name = name;
        }
        let id = i64::try_from(self.id).unwrap_or(i64::MAX);
        self.reply(Reply::Array(14));
        self.reply(Reply::Bulk(b"server"));
        self.reply(Reply::Bulk(b"redis"));
        self.reply(Reply::Bulk(b"version"));
        self.reply(Reply::Bulk(REDIS_COMPAT_VERSION.as_bytes()));
        self.reply(Reply::Bulk(b"proto"));
        self.reply(Reply::Integer(2));
        self.reply(Reply::Bulk(b"id"));
        self.reply(Reply::Integer(id));
        self.reply(Reply::Bulk(b"mode"));
        self.reply(Reply::Bulk(b"standalone"));
        self.reply(Reply::Bulk(b"role"));
        self.reply(Reply::Bulk(b"master"));
        self.reply(Reply::Bulk(b"modules"));
        self.reply(Reply::Array(0));
    }

    /// `CONFIG GET name...`: the Redis parameters that describe this front door (`save` and
    /// `appendonly`, which tools such as `redis-benchmark` ask for, say "no persistence"), by
    /// exact name or `*`; other subcommands are refused (nothing is configurable at run time).
    fn config(&mut self, request: Args<'_>) {
        let sub = request.arg(1).to_ascii_uppercase();
        match sub.as_slice() {
            b"GET" if request.len() >= 3 => {
                let params = self.config_params();
                let asked: Vec<&(&str, String)> = params
                    .iter()
                    .filter(|(name, _)| {
                        request
                            .args_from(2)
                            .any(|p| p == b"*" || p.eq_ignore_ascii_case(name.as_bytes()))
                    })
                    .collect();
                self.reply(Reply::Array(2 * asked.len()));
                for (name, value) in asked {
                    self.reply(Reply::Bulk(name.as_bytes()));
                    self.reply(Reply::Bulk(value.as_bytes()));
                }
            }
            b"GET" => self.refuse(&CommandError::Arity("config|get".into())),
            _ => self.refuse(&CommandError::Unsupported(format!(
                "CONFIG {}",
                String::from_utf8_lossy(&sub)
            ))),
        }
    }

    /// What `CONFIG GET` reports.
    fn config_params(&self) -> [(&'static str, String); 6] {
        let config = &self.door.config;
        [
            ("save", String::new()),
            ("appendonly", "no".to_owned()),
            ("databases", "1".to_owned()),
            ("maxclients", config.max_connections.to_string()),
            (
                "proto-max-bulk-len",
                config.limits.max_bulk_bytes.to_string(),
            ),
            (
                "client-query-buffer-limit",
                config.max_query_buffer_bytes.to_string(),
            ),
        ]
    }
}

/// A batch of commands arrived now; its deadline is the front door's request timeout from now
/// (RESP requests carry none of their own). The one place a RESP deadline is made.
fn arrival(door: &FrontDoor) -> (Instant, Deadline) {
    let now = Instant::now();
    let deadline = now.checked_add(door.config.request_timeout).map_or_else(
        || Deadline::after(door.config.request_timeout),
        Deadline::at,
    );
    (now, deadline)
}

/// The error reply for a handler's error: its first word is a code a client library can act on
/// (`TRYAGAIN` and `BUSY` are retryable in the common libraries).
fn service_error_text(err: &ServiceError) -> String {
    match err {
        ServiceError::InvalidArgument(m) => format!("ERR invalid argument: {m}"),
        ServiceError::UnknownGroup(g) => format!("ERR unknown group {g:?}"),
        ServiceError::Unavailable(m) => format!("TRYAGAIN unavailable: {m}"),
        ServiceError::NotServing(m) => format!("TRYAGAIN not serving: {m}"),
        ServiceError::NotOwner(m) => format!("TRYAGAIN not the owner: {m}"),
        ServiceError::LoadFailed(m) => format!("TRYAGAIN loading failed: {m}"),
        ServiceError::DeadlineExceeded(m) => format!("TIMEOUT deadline exceeded: {m}"),
        ServiceError::ResourceExhausted(m) => format!("BUSY overloaded: {m}"),
        ServiceError::Internal(m) => format!("ERR internal error: {m}"),
    }
}
