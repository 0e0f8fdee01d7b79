//! The RESP2 wire: a [`tokio_util::codec`] decoder of client requests and an encoder of replies.
//!
//! A Redis server reads only two request shapes (see "Sending commands to a Redis server" in the
//! RESP specification): a *multibulk* request, an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), which every client library and `redis-cli` send, and an
//! *inline* request, one line of space-separated words (`PING\r\n`), for telnet-style use. The
//! decoder accepts exactly these, with Redis's own bounds and error messages
//! (`networking.c`: `processMultibulkBuffer`, `processInlineBuffer`):
//!
//! - at most [`RequestLimits::max_args`] arguments per request, else
//!   `Protocol error: invalid multibulk length`;
//! - at most [`RequestLimits::max_bulk_bytes`] per argument, checked at the length header before
//!   any of the data is buffered, else `Protocol error: invalid bulk length`;
//! - count and length lines of at most 18 digits, inline requests of at most
//!   [`MAX_INLINE_BYTES`].
//!
//! A general RESP decoder (e.g. the `redis-protocol` crate's) parses nested arrays recursively
//! with no depth bound and buffers a bulk string of any declared length, so a few kilobytes of
//! `*1\r\n*1\r\n...` would overflow the stack; a request is a flat array, and the decoder reads it
//! as one. The tests cross-check it against `redis-protocol`'s decoder.
//!
//! [`RespCodec::parse`] reads a request where it lies in the read buffer and hands out its
//! arguments as borrowed slices ([`Args`]); whoever keeps an argument beyond the request copies it
//! out (see `session.rs`).

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Longest inline request, and longest count or length line, in bytes (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// Bounds on what one request may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most arguments (command name included) in one request.
    pub max_args: usize,
    /// Largest argument, in bytes (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
}

/// Why a request could not be decoded; the connection answers `-ERR <message>` and closes.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// An inline request longer than [`MAX_INLINE_BYTES`] without a line end.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// The argument count is not an integer (of at most 18 digits, then `\r\n`) or exceeds
    /// [`RequestLimits::max_args`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidCount,
    /// An element of a multibulk request is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// A bulk length that is not an integer (of at most 18 digits, then `\r\n`), negative, or
    /// above [`RequestLimits::max_bulk_bytes`].
    #[error("Protocol error: invalid bulk length")]
    InvalidLength,
    /// A bulk string not followed by `\r\n`.
    #[error("Protocol error: expected CRLF after bulk string")]
    MissingCrlf,
    /// An inline request with more words than [`RequestLimits::max_args`].
    #[error("Protocol error: too many arguments in inline request")]
    TooManyInlineArgs,
    /// The connection failed while reading.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// The arguments of one request (the command name first), borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Number of arguments, the command name included (never 0).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Always false: empty requests are skipped by the decoder.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name); empty when out of range.
    pub fn arg(&self, i: usize) -> &'a [u8] {
        self.ranges
            .get(i)
            .and_then(|r| self.buf.get(r.clone()))
            .unwrap_or_default()
    }

    /// The arguments from `from` on.
    pub fn args_from(&self, from: usize) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(move |r| buf.get(r.clone()).unwrap_or_default())
    }
}

/// One decoded request that owns its bytes (what the [`Decoder`] impl yields): a frozen chunk
/// of the read buffer and the ranges of its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    frame: Bytes,
    ranges: Vec<Range<usize>>,
}

impl Request {
    /// Its arguments.
    pub fn args(&self) -> Args<'_> {
        Args {
            buf: &self.frame,
            ranges: &self.ranges,
        }
    }
}

/// What [`RespCodec::parse`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A request of this many bytes; [`RespCodec::args`] holds its arguments.
    Request(usize),
    /// An empty request (`*0`, a blank line) of this many bytes: skip it.
    Skipped(usize),
    /// Only part of a request: call again, on the same start, once more bytes arrived.
    Incomplete,
}

/// Progress through a multibulk request that is not complete in the buffer yet, so the next
/// call resumes where this one stopped instead of parsing the headers again.
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Arguments the request declared.
    count: usize,
    /// Where the next argument's `$` is expected.
    pos: usize,
}

/// Decodes requests and encodes replies of one connection.
///
/// [`RespCodec::parse`] reads a request in place and keeps its argument ranges in a list reused
/// from one request to the next (the session's path: no allocation per request); the
/// [`Decoder`] impl wraps it for use with `FramedRead` and tests.
#[derive(Debug)]
pub struct RespCodec {
    limits: RequestLimits,
    partial: Option<Partial>,
    ranges: Vec<Range<usize>>,
}

impl RespCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        RespCodec {
            limits,
            partial: None,
            ranges: Vec::new(),
        }
    }

    /// The arguments of the request the last [`RespCodec::parse`] found in `buf` (the same
    /// buffer start it was given).
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        Args {
            buf,
            ranges: &self.ranges,
        }
    }

    /// Parses the request at the start of `buf` without consuming anything. After
    /// [`Parsed::Incomplete`], call again with the same start and more bytes after it.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        match buf.first() {
            None => Ok(Parsed::Incomplete),
            Some(b'*') => self.parse_multibulk(buf),
            Some(_) => self.parse_inline(buf),
        }
    }
}

/// Most digits of a count or length (Redis's `string2ll` reads at most 18 safely).
const MAX_DIGITS: usize = 18;

/// What a `*<count>` or `$<length>` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// The number (`None` if negative) and where the next line starts.
    Number(Option<usize>, usize),
    /// The line is not complete yet.
    Incomplete,
    /// Not an optional `-`, 1 to [`MAX_DIGITS`] digits and `\r\n`.
    Invalid,
}

/// Reads the number of the header line whose type byte is at `at`, in one pass over at most
/// `2 + MAX_DIGITS + 2` bytes (a line that goes on longer is invalid, so nothing unbounded is
/// buffered waiting for its end).
fn header(buf: &[u8], at: usize) -> Header {
    let mut i = at + 1;
    let negative = buf.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits_start = i;
    let mut value = 0usize;
    loop {
        match buf.get(i) {
            None => return Header::Incomplete,
            Some(&d) if d.is_ascii_digit() => {
                if i - digits_start == MAX_DIGITS {
                    return Header::Invalid;
                }
                value = value * 10 + usize::from(d - b'0');
                i += 1;
            }
            Some(b'\r') if i > digits_start => {
                return match buf.get(i + 1) {
                    None => Header::Incomplete,
                    Some(b'\n') => Header::Number((!negative).then_some(value), i + 2),
                    Some(_) => Header::Invalid,
                };
            }
            Some(_) => return Header::Invalid,
        }
    }
}

impl RespCodec {
    /// Parses a multibulk request at the start of `buf` (whose first byte is `*`).
    fn parse_multibulk(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                let (count, next) = match header(buf, 0) {
                    // Like Redis, a count of zero or below means "no command".
                    Header::Number(count, next) => (count.unwrap_or(0), next),
                    Header::Incomplete => return Ok(Parsed::Incomplete),
                    Header::Invalid => return Err(ProtocolError::InvalidCount),
                };
                if count > self.limits.max_args {
                    return Err(ProtocolError::InvalidCount);
                }
                self.ranges.clear();
                Partial { count, pos: next }
            }
        };
        while self.ranges.len() < partial.count {
            let pos = partial.pos;
            let Some(&first) = buf.get(pos) else {
                self.partial = Some(partial);
                return Ok(Parsed::Incomplete);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedBulk(first));
            }
            let (len, start) = match header(buf, pos) {
                Header::Number(Some(len), next) if len <= self.limits.max_bulk_bytes => (len, next),
                Header::Incomplete => {
                    self.partial = Some(partial);
                    return Ok(Parsed::Incomplete);
                }
                Header::Number(..) | Header::Invalid => return Err(ProtocolError::InvalidLength),
            };
            let stop = start + len;
            if buf.len() < stop + 2 {
                self.partial = Some(partial);
                return Ok(Parsed::Incomplete);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            // The list only grows as arguments arrive: never by what a client merely declared.
            self.ranges.push(start..stop);
            partial.pos = stop + 2;
        }
        Ok(if partial.count == 0 {
            // `*0` or `*-1`: nothing to run (Redis skips it too).
            Parsed::Skipped(partial.pos)
        } else {
            Parsed::Request(partial.pos)
        })
    }

    /// Parses an inline request (one line of words separated by spaces or tabs).
    fn parse_inline(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let Some(newline) = memchr::memchr(b'\n', buf) else {
            return if buf.len() > MAX_INLINE_BYTES {
                Err(ProtocolError::TooBigInline)
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        if newline > MAX_INLINE_BYTES {
            return Err(ProtocolError::TooBigInline);
        }
        let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        self.ranges.clear();
        let mut word: Option<usize> = None;
        for (i, &b) in buf[..line_end].iter().enumerate() {
            let space = b == b' ' || b == b'\t';
            match (word, space) {
                (None, false) => word = Some(i),
                (Some(start), true) => {
                    self.ranges.push(start..i);
                    word = None;
                }
                _ => {}
            }
        }
        if let Some(start) = word {
            self.ranges.push(start..line_end);
        }
        if self.ranges.len() > self.limits.max_args {
            return Err(ProtocolError::TooManyInlineArgs);
        }
        Ok(if self.ranges.is_empty() {
            Parsed::Skipped(newline + 1)
        } else {
            Parsed::Request(newline + 1)
        })
    }
}

impl Decoder for RespCodec {
    type Item = Request;
    type Error = ProtocolError;

    /// The next complete request in `src`, consuming it; `Ok(None)` when `src` holds only part
    /// of one (call again with more bytes). Empty requests (`*0`, blank lines) are skipped.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            match self.parse(src)? {
                Parsed::Request(len) => {
                    return Ok(Some(Request {
                        frame: src.split_to(len).freeze(),
                        ranges: self.ranges.clone(),
                    }))
                }
                Parsed::Skipped(len) => src.advance(len),
                Parsed::Incomplete => return Ok(None),
            }
        }
    }
}

/// One reply, as [`RespCodec`] encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+<text>`: a status such as `OK` or `PONG`.
    Simple(&'a str),
    /// `-<text>`: an error, whose first word is its code (`ERR`, `TRYAGAIN`, ...).
    Error(&'a str),
    /// `:<n>`.
    Integer(i64),
    /// `$<len>` and the bytes.
    Bulk(&'a [u8]),
    /// `$-1`: the nil bulk string (a miss).
    Nil,
    /// `*<n>`: the header of an array; its `n` elements follow as further replies.
    Array(usize),
}

impl Reply<'_> {
    /// Appends the encoded reply to `dst`.
    pub fn write_to(&self, dst: &mut BytesMut) {
        match *self {
            Reply::Simple(text) => line(dst, b'+', text.as_bytes()),
            Reply::Error(text) => line(dst, b'-', text.as_bytes()),
            Reply::Integer(n) => number_line(dst, b':', itoa::Buffer::new().format(n)),
            Reply::Bulk(data) => {
                dst.reserve(data.len() + 16);
                number_line(dst, b'$', itoa::Buffer::new().format(data.len()));
                dst.put_slice(data);
                dst.put_slice(b"\r\n");
            }
            Reply::Nil => dst.put_slice(b"$-1\r\n"),
            Reply::Array(n) => number_line(dst, b'*', itoa::Buffer::new().format(n)),
        }
    }
}

/// `<kind><digits>\r\n`.
fn number_line(dst: &mut BytesMut, kind: u8, digits: &str) {
    dst.reserve(digits.len() + 3);
    dst.put_u8(kind);
    dst.put_slice(digits.as_bytes());
    dst.put_slice(b"\r\n");
}

/// `<kind><text>\r\n`, with any CR or LF in `text` replaced by a space so the reply stays one
/// line (error messages may quote what a client or a loader sent).
fn line(dst: &mut BytesMut, kind: u8, text: &[u8]) {
    dst.reserve(text.len() + 3);
    dst.put_u8(kind);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        dst.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        dst.put_slice(text);
    }
    dst.put_slice(b"\r\n");
}

impl Encoder<Reply<'_>> for RespCodec {
    type Error = std::io::Error;

    fn encode(&mut self, reply: Reply<'_>, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        reply.write_to(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        max_args: 8,
        max_bulk_bytes: 16,
    };

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, String> {
        let mut codec = RespCodec::new(LIMITS);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(req) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            out.push(req.args().args_from(0).map(<[u8]>::to_vec).collect());
        }
        Ok(out)
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_inline_requests() {
        let got = decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  set a\tb \n").unwrap();
        assert_eq!(
            got,
            vec![
                words(&["GET", "k"]),
                words(&["PING"]),
                words(&["set", "a", "b"])
            ]
        );
    }

    #[test]
    fn binary_arguments_are_kept_as_they_are() {
        let got = decode_all(b"*2\r\n$4\r\na\r\nb\r\n$0\r\n\r\n").unwrap();
        assert_eq!(got, vec![vec![b"a\r\nb".to_vec(), Vec::new()]]);
    }

    #[test]
    fn empty_requests_are_skipped() {
        let got = decode_all(b"*0\r\n\r\n*-1\r\n*-5\r\n\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"])]);
    }

    #[test]
    fn incomplete_requests_wait_for_more_bytes_at_every_split() {
        let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\nECHO hi\r\n";
        for split in 0..input.len() {
            let mut codec = RespCodec::new(LIMITS);
            let mut buf = BytesMut::from(&input[..split]);
            let mut got = Vec::new();
            while let Some(req) = codec.decode(&mut buf).unwrap() {
                got.push(
                    req.args()
                        .args_from(0)
                        .map(<[u8]>::to_vec)
                        .collect::<Vec<_>>(),
                );
            }
            buf.extend_from_slice(&input[split..]);
            while let Some(req) = codec.decode(&mut buf).unwrap() {
                got.push(req.args().args_from(0).map(<[u8]>::to_vec).collect());
            }
            assert_eq!(
                got,
                vec![words(&["SET", "k", "value"]), words(&["ECHO", "hi"])],
                "split at {split}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn malformed_requests_are_errors_with_redis_messages() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*9\r\n", "Protocol error: invalid multibulk length"),
            (b"*-x\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\rx", "Protocol error: invalid multibulk length"),
            (b"*\r\n", "Protocol error: invalid multibulk length"),
            (b"*1 \r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$1x\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
            (b"*1\r\n*1\r\n", "Protocol error: expected '$', got '*'"),
            (b"*1\r\n$17\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (
                b"*1\r\n$1\r\nabc\r\n",
                "Protocol error: expected CRLF after bulk string",
            ),
            (
                b"a b c d e f g h i\r\n",
                "Protocol error: too many arguments in inline request",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *message,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn unterminated_lines_are_bounded() {
        // A count or length line is judged within 18 digits; it never waits for more.
        let long = b"*1234567890123456789";
        assert_eq!(
            decode_all(long).unwrap_err(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(decode_all(&long[..19]).unwrap(), Vec::<Vec<Vec<u8>>>::new());
        let long = b"*1\r\n$1234567890123456789";
        assert_eq!(
            decode_all(long).unwrap_err(),
            "Protocol error: invalid bulk length"
        );
        let long = vec![b'a'; MAX_INLINE_BYTES + 1];
        assert_eq!(
            decode_all(&long).unwrap_err(),
            "Protocol error: too big inline request"
        );
        // Just under the bound: still waiting for the line end.
        assert_eq!(
            decode_all(&long[..MAX_INLINE_BYTES]).unwrap(),
            Vec::<Vec<Vec<u8>>>::new()
        );
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = BytesMut::new();
        for reply in [
            Reply::Simple("OK"),
            Reply::Error("ERR bad\r\nthing"),
            Reply::Integer(-7),
            Reply::Bulk(b"v\r\n"),
            Reply::Nil,
            Reply::Array(2),
        ] {
            reply.write_to(&mut out);
        }
        assert_eq!(
            &out[..],
            b"+OK\r\n-ERR bad  thing\r\n:-7\r\n$3\r\nv\r\n\r\n$-1\r\n*2\r\n"
        );
    }
}
