//! Properties of the RESP codec, checked against an independent RESP implementation (the
//! `redis-protocol` crate): requests split anywhere decode to the same arguments, what the codec
//! accepts `redis-protocol` reads the same way, arbitrary bytes never panic it, and replies
//! encode to frames `redis-protocol` decodes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use lcache_transport::resp::{Reply, RequestLimits, RespCodec};
use proptest::prelude::*;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio_util::codec::Decoder;

const LIMITS: RequestLimits = RequestLimits {
    max_args: 64,
    max_bulk_bytes: 4096,
};

/// `args` as a multibulk request.
fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Every request the codec decodes from `chunks` fed one after another.
fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut codec = RespCodec::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(req) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            out.push(req.args().args_from(0).map(<[u8]>::to_vec).collect());
        }
    }
    Ok(out)
}

fn args_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8)
}

proptest! {
    #[test]
    fn requests_split_anywhere_decode_to_their_arguments(
        requests in prop::collection::vec(args_strategy(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let wire: Vec<u8> = requests.iter().flat_map(|r| encode(r)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&wire[last..p]);
            last = p;
        }
        chunks.push(&wire[last..]);
        prop_assert_eq!(decode_chunks(&chunks).unwrap(), requests);
    }

    #[test]
    fn what_the_codec_accepts_redis_protocol_reads_alike(bytes in prop::collection::vec(any::<u8>(), 0..64), args in args_strategy()) {
        // Valid requests followed by noise: the first request decodes the same way in both.
        let mut wire = encode(&args);
        wire.extend_from_slice(&bytes);
        let ours = decode_chunks(&[&wire]);
        let (frame, _) = decode(&wire).unwrap().expect("a complete frame");
        let OwnedFrame::Array(items) = frame else { panic!("an array") };
        let theirs: Vec<Vec<u8>> = items
            .into_iter()
            .map(|f| match f {
                OwnedFrame::BulkString(b) => b,
                other => panic!("a bulk string, got {other:?}"),
            })
            .collect();
        // Ours may reject the noise after it, but never before the first request is out.
        match ours {
            Ok(requests) => prop_assert_eq!(&requests[0], &theirs),
            Err(_) => {
                let mut codec = RespCodec::new(LIMITS);
                let mut buf = BytesMut::from(&wire[..]);
                let first = codec.decode(&mut buf).unwrap().unwrap();
                let first: Vec<Vec<u8>> = first.args().args_from(0).map(<[u8]>::to_vec).collect();
                prop_assert_eq!(first, theirs);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_flat_arrays_agree(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut wire = b"*".to_vec();
        wire.extend_from_slice(&bytes);
        let mut codec = RespCodec::new(LIMITS);
        let mut buf = BytesMut::from(&wire[..]);
        if let Ok(Some(req)) = codec.decode(&mut buf) {
            let ours: Vec<Vec<u8>> = req.args().args_from(0).map(<[u8]>::to_vec).collect();
            let consumed = wire.len() - buf.len();
            // A request the codec took whole at the start is the same flat array of bulk strings
            // to redis-protocol (unless it began with an empty request the codec skipped).
            match decode(&wire) {
                Ok(Some((OwnedFrame::Array(items), used))) if !items.is_empty() => {
                    let theirs: Vec<Vec<u8>> = items
                        .into_iter()
                        .map(|f| match f {
                            OwnedFrame::BulkString(b) => b,
                            other => panic!("a bulk string, got {other:?}"),
                        })
                        .collect();
                    prop_assert_eq!(ours, theirs);
                    prop_assert_eq!(consumed, used);
                }
                Ok(Some((OwnedFrame::Array(_) | OwnedFrame::Null, _))) => {}
                other => panic!("redis-protocol disagrees: {other:?} vs {ours:?}"),
            }
        }
        // Garbage without a leading `*` is an inline request or an error, never a panic.
        let mut codec = RespCodec::new(LIMITS);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }

    #[test]
    fn replies_decode_back_with_redis_protocol(data in prop::collection::vec(any::<u8>(), 0..100), n in any::<i64>(), text in "[ -~]{0,40}") {
        let mut out = BytesMut::new();
        Reply::Array(5).write_to(&mut out);
        Reply::Bulk(&data).write_to(&mut out);
        Reply::Nil.write_to(&mut out);
        Reply::Integer(n).write_to(&mut out);
        Reply::Simple(&text).write_to(&mut out);
        Reply::Error(&format!("ERR {text}")).write_to(&mut out);
        let (frame, used) = decode(&out).unwrap().expect("complete");
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(
            frame,
            OwnedFrame::Array(vec![
                OwnedFrame::BulkString(data.clone()),
                OwnedFrame::Null,
                OwnedFrame::Integer(n),
                OwnedFrame::SimpleString(text.clone().into_bytes()),
                OwnedFrame::Error(format!("ERR {text}")),
            ])
        );
    }
}

#[test]
fn deeply_nested_arrays_are_refused_at_the_first_level() {
    // A recursive decoder would descend 100 000 levels; the codec refuses the first nested `*`.
    let wire = b"*1\r\n".repeat(100_000);
    assert_eq!(
        decode_chunks(&[&wire]).unwrap_err(),
        "Protocol error: expected '$', got '*'"
    );
}
