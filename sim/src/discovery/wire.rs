//! The registry's line protocol over turmoil TCP: one request line, one answer line; a watch
//! connection then streams change lines. Lines are bounded.
//!
//! ```text
//! GRANT <ttl_ms>                  -> LEASE <id>
//! KEEPALIVE <id>                  -> OK | NOLEASE
//! PUT <key> <value> <lease>       -> REV <revision> | NOLEASE
//! REVOKE <id>                     -> REV <revision>
//! WATCH <prefix>                  -> SNAPSHOT <revision> <n>, n x KV <key> <value>, then
//!                                    PUT <rev> <key> <value> | DEL <rev> <key> | PROGRESS <rev>
//! ```

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::TcpStream;

/// Longest line accepted, newline included.
pub const MAX_LINE: u64 = 1_024;

/// A connection exchanging lines.
#[derive(Debug)]
pub struct LineConn {
    reader: LineReader,
    writer: LineWriter,
}

/// The receiving half of a [`LineConn`].
#[derive(Debug)]
pub struct LineReader(BufReader<OwnedReadHalf>);

/// The sending half of a [`LineConn`].
#[derive(Debug)]
pub struct LineWriter(OwnedWriteHalf);

impl LineConn {
    /// Wraps an established stream.
    pub fn new(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        LineConn {
            reader: LineReader(BufReader::new(read)),
            writer: LineWriter(write),
        }
    }

    /// Connects to `host:port`.
    pub async fn connect(host: &str, port: u16) -> io::Result<Self> {
        TcpStream::connect((host, port)).await.map(LineConn::new)
    }

    /// The two halves, to read and write concurrently.
    pub fn split(self) -> (LineReader, LineWriter) {
        (self.reader, self.writer)
    }

    /// Sends one line (a newline is appended).
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        self.writer.send(line).await
    }

    /// The next line without its newline; `None` at end of stream.
    pub async fn recv(&mut self) -> io::Result<Option<String>> {
        self.reader.recv().await
    }

    /// Sends `line` and reads the answer; end of stream is an error.
    pub async fn call(&mut self, line: &str) -> io::Result<String> {
        self.send(line).await?;
        self.recv()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))
    }
}

impl LineWriter {
    /// Sends one line (a newline is appended).
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.0.write_all(&buf).await?;
        self.0.flush().await
    }
}

impl LineReader {
    /// The next line without its newline; `None` at end of stream. A line longer than
    /// [`MAX_LINE`] is an error.
    pub async fn recv(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        let n = (&mut self.0).take(MAX_LINE).read_line(&mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') {
            return Err(invalid("line too long or cut short"));
        }
        line.pop();
        Ok(Some(line))
    }
}

/// An `InvalidData` error saying `what`.
pub fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}
