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
//! - count and length lines, and inline requests, of at most [`MAX_INLINE_BYTES`].
//!
//! A general RESP decoder (e.g. the `redis-protocol` crate's) parses nested arrays recursively
//! with no depth bound and buffers a bulk string of any declared length, so a few kilobytes of
//! `*1\r\n*1\r\n...` would overflow the stack; a request is a flat array, and the decoder reads it
//! as one. The tests cross-check it against `redis-protocol`'s decoder.
//!
//! A decoded [`Request`] keeps its arguments as ranges into one frozen chunk of the read buffer;
//! whoever keeps an argument beyond the request copies it out (see `session.rs`).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
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
    /// A `*<count>` line longer than [`MAX_INLINE_BYTES`].
    #[error("Protocol error: too big mbulk count string")]
    TooBigCount,
    /// The argument count is not an integer or exceeds [`RequestLimits::max_args`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidCount,
    /// An element of a multibulk request is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// A `$<length>` line longer than [`MAX_INLINE_BYTES`].
    #[error("Protocol error: too big bulk count string")]
    TooBigLength,
    /// A bulk length that is not an integer, negative, or above [`RequestLimits::max_bulk_bytes`].
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

/// One decoded request: its arguments (the command name first), as ranges into `frame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    frame: Bytes,
    args: Vec<Range<usize>>,
}

impl Request {
    /// Number of arguments, the command name included (never 0).
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Always false: an empty request is skipped by the decoder.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `i` (0 is the command name); empty when out of range.
    pub fn arg(&self, i: usize) -> &[u8] {
        self.args
            .get(i)
            .and_then(|r| self.frame.get(r.clone()))
            .unwrap_or_default()
    }

    /// The arguments from `from` on.
    pub fn args_from(&self, from: usize) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.args
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|r| self.frame.get(r.clone()).unwrap_or_default())
    }
}

/// Progress through a multibulk request that is not complete in the buffer yet, so the next
/// call resumes where this one stopped instead of parsing the headers again.
#[derive(Debug, Default)]
struct Partial {
    /// Arguments the request declared.
    count: usize,
    /// Where the next argument's `$` is expected.
    pos: usize,
    /// Arguments complete so far.
    args: Vec<Range<usize>>,
}

/// Decodes requests and encodes replies of one connection.
#[derive(Debug)]
pub struct RespCodec {
    limits: RequestLimits,
    partial: Option<Partial>,
}

impl RespCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        RespCodec {
            limits,
            partial: None,
        }
    }
}

/// Position of the first `\r\n` in `buf` at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    let mut start = 0;
    while let Some(i) = memchr::memchr(b'\r', tail.get(start..)?) {
        let at = start + i;
        match tail.get(at + 1) {
            Some(b'\n') => return Some(from + at),
            Some(_) => start = at + 1,
            None => return None,
        }
    }
    None
}

/// A non-negative decimal integer of at most 18 digits (no sign, no spaces), as Redis's
/// `string2ll` accepts it for lengths; `None` for anything else, including `-1`.
fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

/// A count line `*<n>`: like Redis, a count of zero or below means "no command".
fn parse_count(digits: &[u8]) -> Option<usize> {
    match digits.split_first() {
        Some((b'-', rest)) => parse_len(rest).map(|_| 0),
        _ => parse_len(digits),
    }
}

/// What one decoding attempt found at the start of the buffer.
#[derive(Debug)]
enum Step {
    /// A complete request, consumed.
    Request(Request),
    /// An empty request, consumed.
    Skipped,
    /// Part of a request: nothing consumed.
    Incomplete,
}

impl RespCodec {
    /// Decodes a multibulk request at the start of `src` (whose first byte is `*`).
    fn decode_multibulk(&mut self, src: &mut BytesMut) -> Result<Step, ProtocolError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                let Some(end) = find_crlf(src, 1) else {
                    return if src.len() > MAX_INLINE_BYTES {
                        Err(ProtocolError::TooBigCount)
                    } else {
                        Ok(Step::Incomplete)
                    };
                };
                let count = parse_count(&src[1..end])
                    .filter(|&n| n <= self.limits.max_args)
                    .ok_or(ProtocolError::InvalidCount)?;
                Partial {
                    count,
                    pos: end + 2,
                    // Never reserve what a client merely declared.
                    args: Vec::with_capacity(count.min(16)),
                }
            }
        };
        while partial.args.len() < partial.count {
            let pos = partial.pos;
            let Some(&first) = src.get(pos) else {
                self.partial = Some(partial);
                return Ok(Step::Incomplete);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedBulk(first));
            }
            let Some(end) = find_crlf(src, pos + 1) else {
                if src.len() - pos > MAX_INLINE_BYTES {
                    return Err(ProtocolError::TooBigLength);
                }
                self.partial = Some(partial);
                return Ok(Step::Incomplete);
            };
            let len = parse_len(&src[pos + 1..end])
                .filter(|&n| n <= self.limits.max_bulk_bytes)
                .ok_or(ProtocolError::InvalidLength)?;
            let start = end + 2;
            let stop = start + len;
            if src.len() < stop + 2 {
                self.partial = Some(partial);
                return Ok(Step::Incomplete);
            }
            if &src[stop..stop + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            partial.args.push(start..stop);
            partial.pos = stop + 2;
        }
        let frame = src.split_to(partial.pos).freeze();
        if partial.args.is_empty() {
            // `*0` or `*-1`: nothing to run (Redis skips it too).
            return Ok(Step::Skipped);
        }
        Ok(Step::Request(Request {
            frame,
            args: partial.args,
        }))
    }

    /// Decodes an inline request (one line of words separated by spaces or tabs).
    fn decode_inline(&mut self, src: &mut BytesMut) -> Result<Step, ProtocolError> {
        let Some(newline) = memchr::memchr(b'\n', src) else {
            return if src.len() > MAX_INLINE_BYTES {
                Err(ProtocolError::TooBigInline)
            } else {
                Ok(Step::Incomplete)
            };
        };
        if newline > MAX_INLINE_BYTES {
            return Err(ProtocolError::TooBigInline);
        }
        let line_end = if newline > 0 && src[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        let mut args = Vec::new();
        let mut word: Option<usize> = None;
        for (i, &b) in src[..line_end].iter().enumerate() {
            let space = b == b' ' || b == b'\t';
            match (word, space) {
                (None, false) => word = Some(i),
                (Some(start), true) => {
                    args.push(start..i);
                    word = None;
                }
                _ => {}
            }
        }
        if let Some(start) = word {
            args.push(start..line_end);
        }
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::TooManyInlineArgs);
        }
        let frame = src.split_to(newline + 1).freeze();
        if args.is_empty() {
            return Ok(Step::Skipped);
        }
        Ok(Step::Request(Request { frame, args }))
    }
}

impl Decoder for RespCodec {
    type Item = Request;
    type Error = ProtocolError;

    /// The next complete request in `src`, consuming it; `Ok(None)` when `src` holds only part
    /// of one (call again with more bytes). Empty requests (`*0`, blank lines) are skipped.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let Some(&first) = src.first() else {
                return Ok(None);
            };
            let step = if first == b'*' {
                self.decode_multibulk(src)?
            } else {
                self.decode_inline(src)?
            };
            match step {
                Step::Request(request) => return Ok(Some(request)),
                Step::Incomplete => return Ok(None),
                Step::Skipped => continue,
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
            Reply::Integer(n) => line(dst, b':', itoa::Buffer::new().format(n).as_bytes()),
            Reply::Bulk(data) => {
                dst.reserve(data.len() + 24);
                line(dst, b'$', itoa::Buffer::new().format(data.len()).as_bytes());
                dst.put_slice(data);
                dst.put_slice(b"\r\n");
            }
            Reply::Nil => dst.put_slice(b"$-1\r\n"),
            Reply::Array(n) => line(dst, b'*', itoa::Buffer::new().format(n).as_bytes()),
        }
    }
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
            out.push(req.args_from(0).map(<[u8]>::to_vec).collect());
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
                got.push(req.args_from(0).map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            buf.extend_from_slice(&input[split..]);
            while let Some(req) = codec.decode(&mut buf).unwrap() {
                got.push(req.args_from(0).map(<[u8]>::to_vec).collect());
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
        let mut long = vec![b'*'];
        long.extend(std::iter::repeat_n(b'1', MAX_INLINE_BYTES + 1));
        assert_eq!(
            decode_all(&long).unwrap_err(),
            "Protocol error: too big mbulk count string"
        );
        let mut long = b"*1\r\n$".to_vec();
        long.extend(std::iter::repeat_n(b'1', MAX_INLINE_BYTES + 1));
        assert_eq!(
            decode_all(&long).unwrap_err(),
            "Protocol error: too big bulk count string"
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
