//! Length-prefixed CBOR maps, the framing of storgo's small control protocols (replicate,
//! announce): `length (u32 BE) | CBOR map`, one frame per message on its own stream.
//!
//! The length is checked against the protocol's limit before anything is allocated. What the
//! map means is each protocol's codec's business ([`MapMessages`]); this module frames,
//! unframes, and runs them as a libp2p request-response codec ([`MapCodec`]).

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::Serialize;

/// The messages of a protocol whose request and response are one CBOR-map frame each.
pub trait MapMessages: Send + Clone + Default + 'static {
    type Request: Send;
    type Response: Send;
    /// Largest map in either direction.
    const MAX_FRAME: usize;
    /// A whole frame (length and map).
    fn encode_request(r: &Self::Request) -> Vec<u8>;
    fn decode_request(map: &[u8]) -> io::Result<Self::Request>;
    fn encode_response(r: &Self::Response) -> Vec<u8>;
    fn decode_response(map: &[u8]) -> io::Result<Self::Response>;
}

/// The request-response codec of a [`MapMessages`] protocol.
#[derive(Debug, Clone, Default)]
pub struct MapCodec<M>(PhantomData<M>);

impl<M: MapMessages> libp2p::request_response::Codec for MapCodec<M> {
    type Protocol = StreamProtocol;
    type Request = M::Request;
    type Response = M::Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<M::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        M::decode_request(&read_map(io, M::MAX_FRAME).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<M::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        M::decode_response(&read_map(io, M::MAX_FRAME).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: M::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&M::encode_request(&req)).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: M::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&M::encode_response(&resp)).await?;
        io.close().await
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One frame holding `map`.
pub(crate) fn frame<T: Serialize>(map: &T) -> Vec<u8> {
    let mut body = Vec::new();
    // Serialising plain structs into a Vec cannot fail.
    let _ = ciborium::into_writer(map, &mut body);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The CBOR map of a frame held in memory, its length checked against `max`.
pub(crate) fn unframe(frame: &[u8], max: usize) -> io::Result<&[u8]> {
    let Some((len, body)) = frame.split_first_chunk::<4>() else {
        return Err(invalid("truncated frame"));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes exceeds {max}")));
    }
    if body.len() != len {
        return Err(invalid("frame length does not match its contents"));
    }
    Ok(body)
}

/// Reads one frame's CBOR map from a stream, refusing a length over `max` before allocating.
pub(crate) async fn read_map<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes exceeds {max}")));
    }
    let mut map = vec![0u8; len];
    io.read_exact(&mut map).await?;
    Ok(map)
}
