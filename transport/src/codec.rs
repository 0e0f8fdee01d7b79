//! The gRPC codec of the `lcache.v1` service: prost messages, as tonic's own codec, with
//! buffers that start at the size of a typical message instead of 8 KiB.
//!
//! tonic encodes each response into a buffer of its own: with the default 8 KiB, every answer
//! allocated and freed 8 KiB, a size class of few objects per allocator page, so pages kept
//! emptying and filling again. With the allocator giving empty pages back to the OS at once
//! (`lcache-node` asks mimalloc for that, to keep its resident memory near its budgets) each of
//! those pages was given back and faulted in again: a node serving gets of 100,000 keys spent
//! 32 µs of CPU per get instead of 12. A buffer starting at [`BUFFER_BYTES`] comes from a size
//! class shared with everything else small, and grows when a message is larger.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes a message's encode or decode buffer starts with: a get's answer for a value of a few
/// hundred bytes fits.
pub const BUFFER_BYTES: usize = 512;

/// Bytes an encoder may buffer before it yields: tonic's default. Only a streaming response
/// has more than one message to buffer, and this API has none.
const YIELD_BYTES: usize = 32 * 1024;

/// prost encoding and decoding with [`BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}
