//! Wire format of `/storgo/chunks/1.0.0` (see `protocols/chunks-v1.md`).
//!
//! Every message is one frame on its own stream:
//!
//! ```text
//! header length (u32 BE, <= MAX_HEADER) | header (CBOR map) | body (raw bytes, length in header)
//! ```
//!
//! A block travels as the raw body, not as a CBOR byte string inside the header: encoding and
//! decoding megabyte byte strings through serde costs more than the rest of the transfer. Every
//! length is checked against its limit before anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::{
    ChunkRequest, ChunkResponse, ErrorCode, MAX_BODY, MAX_HAVE, MAX_HEADER, MAX_MESSAGE,
    REQUEST_READ_TIMEOUT,
};
use crate::content::BlockAddress;

/// Never valid: what [`ChunkRequest::Invalid`] is sent as.
const OP_INVALID: u8 = 0;
const OP_MANIFEST: u8 = 1;
const OP_CHUNK: u8 = 2;
const OP_HAVE: u8 = 3;

const ST_BLOCK: u8 = 0;
const ST_HAVE: u8 = 1;
const ST_NOT_FOUND: u8 = 2;
const ST_ERROR: u8 = 3;

#[derive(Serialize, Deserialize)]
struct RequestHeader {
    op: u8,
    #[serde(rename = "a")]
    addresses: Vec<serde_bytes::ByteBuf>,
}

#[derive(Serialize, Deserialize)]
struct ResponseHeader {
    #[serde(rename = "s")]
    status: u8,
    /// Body length in bytes.
    #[serde(rename = "n")]
    len: u32,
    /// Entries in a `have` bitmap.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl ResponseHeader {
    /// A header with a status and body length only.
    fn plain(status: u8, len: usize) -> Self {
        Self {
            status,
            len: len as u32,
            count: None,
            code: None,
            message: None,
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Encodes a request frame.
pub fn encode_request(req: &ChunkRequest) -> Vec<u8> {
    let (op, addrs): (u8, Vec<BlockAddress>) = match req {
        ChunkRequest::GetManifest(a) => (OP_MANIFEST, vec![*a]),
        ChunkRequest::GetChunk(a) => (OP_CHUNK, vec![*a]),
        ChunkRequest::Have(v) => (OP_HAVE, v.clone()),
        ChunkRequest::Invalid(_) | ChunkRequest::Incomplete(_) => (OP_INVALID, vec![]),
    };
    frame(
        &RequestHeader {
            op,
            addresses: addrs
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.to_cid_bytes().to_vec()))
                .collect(),
        },
        &[],
    )
}

/// Decodes a request frame's header (requests have no body); a header that is not a valid
/// request is [`ChunkRequest::Invalid`], answered "bad request".
pub fn decode_request(header: &[u8]) -> ChunkRequest {
    parse_request(header).unwrap_or_else(|e| ChunkRequest::Invalid(e.to_string()))
}

fn parse_request(header: &[u8]) -> io::Result<ChunkRequest> {
    let h: RequestHeader =
        ciborium::from_reader(header).map_err(|e| invalid(format!("request header: {e}")))?;
    if h.addresses.len() > MAX_HAVE {
        return Err(invalid(format!(
            "{} addresses exceed {MAX_HAVE}",
            h.addresses.len()
        )));
    }
    let addrs = h
        .addresses
        .iter()
        .map(|b| BlockAddress::from_cid_bytes(b).map_err(|e| invalid(e.to_string())))
        .collect::<io::Result<Vec<_>>>()?;
    match (h.op, addrs.as_slice()) {
        (OP_MANIFEST, [a]) => Ok(ChunkRequest::GetManifest(*a)),
        (OP_CHUNK, [a]) => Ok(ChunkRequest::GetChunk(*a)),
        (OP_HAVE, _) => Ok(ChunkRequest::Have(addrs)),
        (op, _) => Err(invalid(format!("unknown op {op} or wrong address count"))),
    }
}

/// Encodes a response frame.
pub fn encode_response(resp: &ChunkResponse) -> Vec<u8> {
    match resp {
        ChunkResponse::Block(b) => frame(&ResponseHeader::plain(ST_BLOCK, b.len()), b),
        ChunkResponse::Have(bits) => {
            let mut bitmap = vec![0u8; bits.len().div_ceil(8)];
            for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
                bitmap[i / 8] |= 0x80 >> (i % 8);
            }
            frame(
                &ResponseHeader {
                    count: Some(bits.len() as u32),
                    ..ResponseHeader::plain(ST_HAVE, bitmap.len())
                },
                &bitmap,
            )
        }
        ChunkResponse::NotFound => frame(&ResponseHeader::plain(ST_NOT_FOUND, 0), &[]),
        ChunkResponse::Error { code, message } => frame(
            &ResponseHeader {
                code: Some(*code as u8),
                message: Some(message.chars().take(MAX_MESSAGE).collect()),
                ..ResponseHeader::plain(ST_ERROR, 0)
            },
            &[],
        ),
    }
}

/// Header length and header: everything of a frame but its body.
fn frame_prefix<H: Serialize>(header: &H) -> Vec<u8> {
    let mut h = Vec::new();
    // Serialising these plain structs into a Vec cannot fail.
    let _ = ciborium::into_writer(header, &mut h);
    let mut out = Vec::with_capacity(4 + h.len());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out
}

fn frame<H: Serialize>(header: &H, body: &[u8]) -> Vec<u8> {
    let mut out = frame_prefix(header);
    out.extend_from_slice(body);
    out
}

/// Checks a response header and says how long its body is.
fn response_body_len(h: &ResponseHeader) -> io::Result<usize> {
    let len = h.len as usize;
    let limit = match h.status {
        ST_BLOCK => MAX_BODY,
        ST_HAVE => MAX_HAVE.div_ceil(8),
        _ => 0,
    };
    if len > limit {
        return Err(invalid(format!(
            "response body of {len} bytes exceeds {limit}"
        )));
    }
    Ok(len)
}

fn decode_response(h: ResponseHeader, body: Vec<u8>) -> io::Result<ChunkResponse> {
    match h.status {
        ST_BLOCK => Ok(ChunkResponse::Block(body)),
        ST_HAVE => {
            let n = h.count.unwrap_or(0) as usize;
            if n > MAX_HAVE || n.div_ceil(8) != body.len() {
                return Err(invalid("have bitmap length does not match its count"));
            }
            Ok(ChunkResponse::Have(
                (0..n)
                    .map(|i| body[i / 8] & (0x80 >> (i % 8)) != 0)
                    .collect(),
            ))
        }
        ST_NOT_FOUND => Ok(ChunkResponse::NotFound),
        ST_ERROR => Ok(ChunkResponse::Error {
            code: ErrorCode::from_u8(h.code.unwrap_or(3)),
            message: h
                .message
                .unwrap_or_default()
                .chars()
                .take(MAX_MESSAGE)
                .collect(),
        }),
        s => Err(invalid(format!("unknown response status {s}"))),
    }
}

/// Reads a response header; a response over a limit fails the request (the requester resets
/// the stream and asks another provider).
async fn read_header<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(invalid(format!(
            "header of {len} bytes exceeds {MAX_HEADER}"
        )));
    }
    let mut h = vec![0u8; len];
    io.read_exact(&mut h).await?;
    Ok(h)
}

/// Decodes a whole response frame held in memory (used by tests and the spec's vectors).
pub fn decode_response_frame(frame: &[u8]) -> io::Result<ChunkResponse> {
    if frame.len() < 4 {
        return Err(invalid("truncated frame"));
    }
    let hlen = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if hlen > MAX_HEADER || frame.len() < 4 + hlen {
        return Err(invalid("bad header length"));
    }
    let h: ResponseHeader = ciborium::from_reader(&frame[4..4 + hlen])
        .map_err(|e| invalid(format!("response header: {e}")))?;
    let len = response_body_len(&h)?;
    if frame.len() != 4 + hlen + len {
        return Err(invalid("body length does not match the header"));
    }
    decode_response(h, frame[4 + hlen..].to_vec())
}

/// Decodes a whole request frame held in memory, as a responder reads it from a stream:
/// bytes after the header are not read.
pub fn decode_request_frame(frame: &[u8]) -> ChunkRequest {
    futures::executor::block_on(read_request_from(&mut futures::io::Cursor::new(frame)))
}

/// Reads one request from a stream. Whatever goes wrong short of the stream failing is a
/// [`ChunkRequest::Invalid`]: a header over the limit (not read), a header cut off, one that
/// does not decode. Bytes after the header are left unread.
async fn read_request_from<T: AsyncRead + Unpin + Send>(io: &mut T) -> ChunkRequest {
    let mut len = [0u8; 4];
    if let Err(e) = io.read_exact(&mut len).await {
        return ChunkRequest::Incomplete(format!("request ends before its header length: {e}"));
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return ChunkRequest::Invalid(format!("header of {len} bytes exceeds {MAX_HEADER}"));
    }
    let mut h = vec![0u8; len];
    if let Err(e) = io.read_exact(&mut h).await {
        return ChunkRequest::Incomplete(format!("request ends inside its {len}-byte header: {e}"));
    }
    decode_request(&h)
}

/// The request-response codec of the chunk exchange.
#[derive(Debug, Clone, Default)]
pub struct ChunkCodec;

impl libp2p::request_response::Codec for ChunkCodec {
    type Protocol = StreamProtocol;
    type Request = ChunkRequest;
    type Response = ChunkResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<ChunkRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        // libp2p runs the codec in the connection's task, on the node's tokio runtime.
        Ok(
            tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request_from(io))
                .await
                .unwrap_or_else(|_| {
                    ChunkRequest::Incomplete(format!(
                        "request incomplete after {} s",
                        REQUEST_READ_TIMEOUT.as_secs()
                    ))
                }),
        )
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ChunkResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let h = read_header(io).await?;
        let h: ResponseHeader =
            ciborium::from_reader(&h[..]).map_err(|e| invalid(format!("response header: {e}")))?;
        let len = response_body_len(&h)?;
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await?;
        decode_response(h, body)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: ChunkRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_request(&req)).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: ChunkResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match &resp {
            // Header and body are written separately so a block is not copied into a frame.
            ChunkResponse::Block(b) => {
                io.write_all(&frame_prefix(&ResponseHeader::plain(ST_BLOCK, b.len())))
                    .await?;
                io.write_all(b).await?;
            }
            other => io.write_all(&encode_response(other)).await?,
        }
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let a = BlockAddress::of(b"a");
        for req in [
            ChunkRequest::GetManifest(a),
            ChunkRequest::GetChunk(a),
            ChunkRequest::Have(vec![a; 10]),
        ] {
            assert_eq!(decode_request_frame(&encode_request(&req)), req);
        }
        for resp in [
            ChunkResponse::Block(vec![1, 2, 3]),
            ChunkResponse::Have(vec![
                true, false, true, true, false, false, false, false, true,
            ]),
            ChunkResponse::NotFound,
            ChunkResponse::Error {
                code: ErrorCode::Busy,
                message: "later".into(),
            },
        ] {
            assert_eq!(
                decode_response_frame(&encode_response(&resp)).unwrap(),
                resp
            );
        }
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let bad = |frame: &[u8], why: &str| match decode_request_frame(frame) {
            ChunkRequest::Invalid(reason) | ChunkRequest::Incomplete(reason) => {
                assert!(reason.contains(why), "{reason}")
            }
            other => panic!("{other:?} from {frame:02x?}"),
        };
        bad(&[0xff, 0xff, 0xff, 0xff], "exceeds 65536");
        bad(&[0, 0, 0, 1, 0xff], "request header");
        bad(&[0, 0, 0, 9, 0xa0], "ends inside its 9-byte header");
        bad(&[0, 0], "before its header length");
        let too_many = ChunkRequest::Have(vec![BlockAddress::of(b"x"); MAX_HAVE + 1]);
        bad(&encode_request(&too_many), "exceed 1024");
        bad(
            &encode_request(&ChunkRequest::Invalid("x".into())),
            "unknown op 0",
        );
        // Claim a body one byte over the limit.
        let big = frame(&ResponseHeader::plain(ST_BLOCK, MAX_BODY + 1), &[]);
        assert!(decode_response_frame(&big).is_err());
    }

    #[tokio::test]
    async fn the_largest_chunk_passes_the_codec_and_one_byte_more_does_not() {
        use libp2p::request_response::Codec;
        let proto = StreamProtocol::new(super::super::PROTOCOL);
        {
            let block = vec![7u8; MAX_BODY];
            let mut wire = futures::io::Cursor::new(Vec::new());
            ChunkCodec
                .write_response(&proto, &mut wire, ChunkResponse::Block(block.clone()))
                .await
                .unwrap();
            let mut r = futures::io::Cursor::new(wire.into_inner());
            assert_eq!(
                ChunkCodec.read_response(&proto, &mut r).await.unwrap(),
                ChunkResponse::Block(block)
            );

            let h = ResponseHeader::plain(ST_BLOCK, MAX_BODY + 1);
            let mut over = frame(&h, &[]);
            over.resize(over.len() + MAX_BODY + 1, 0);
            let mut r = futures::io::Cursor::new(over);
            let err = ChunkCodec.read_response(&proto, &mut r).await.unwrap_err();
            assert!(err.to_string().contains("exceeds"), "{err}");

            let mut r = futures::io::Cursor::new(((MAX_HEADER + 1) as u32).to_be_bytes().to_vec());
            assert!(matches!(
                ChunkCodec.read_request(&proto, &mut r).await,
                Ok(ChunkRequest::Invalid(_))
            ));
        }
    }

    /// The header limit is inclusive, unknown keys are ignored, CBOR need not be canonical,
    /// and bytes after the header are not read (`protocols/chunks-v1.md`, "Decoding").
    #[test]
    fn decoding_is_lenient_where_the_spec_says_so() {
        let a = BlockAddress::of(b"a");
        let cid = a.to_cid_bytes();
        // { "op": 2, "a": [cid], "x": <padding> } with the header exactly MAX_HEADER long.
        let mut header = vec![0xa3, 0x62, b'o', b'p', 0x02, 0x61, b'a', 0x81, 0x58, 36];
        header.extend_from_slice(&cid);
        header.extend_from_slice(&[0x61, b'x', 0x5a]);
        let pad = MAX_HEADER - header.len() - 4;
        header.extend_from_slice(&(pad as u32).to_be_bytes());
        header.resize(MAX_HEADER, 0);
        let mut frame = (MAX_HEADER as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&header);
        assert_eq!(decode_request_frame(&frame), ChunkRequest::GetChunk(a));
        // Trailing bytes after the header: ignored.
        frame.extend_from_slice(b"trailing");
        assert_eq!(decode_request_frame(&frame), ChunkRequest::GetChunk(a));
        // Indefinite-length map and array (not canonical): accepted.
        let mut h = vec![0xbf, 0x62, b'o', b'p', 0x01, 0x61, b'a', 0x9f, 0x58, 36];
        h.extend_from_slice(&cid);
        h.extend_from_slice(&[0xff, 0xff]);
        let mut frame = (h.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&h);
        assert_eq!(decode_request_frame(&frame), ChunkRequest::GetManifest(a));
    }

    /// A stream that sends part of a header and then nothing: answered after the read
    /// timeout instead of holding the stream.
    #[tokio::test(start_paused = true)]
    async fn a_request_cut_off_mid_frame_is_answered_after_the_read_timeout() {
        use libp2p::request_response::Codec;
        struct Stalls(Vec<u8>);
        impl AsyncRead for Stalls {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<io::Result<usize>> {
                if self.0.is_empty() {
                    return std::task::Poll::Pending;
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                std::task::Poll::Ready(Ok(n))
            }
        }
        let proto = StreamProtocol::new(super::super::PROTOCOL);
        let started = tokio::time::Instant::now();
        let got = ChunkCodec
            .read_request(&proto, &mut Stalls(vec![0, 0, 0, 40, 0xa2]))
            .await
            .unwrap();
        assert!(
            matches!(&got, ChunkRequest::Incomplete(r) if r.contains("incomplete after 10 s")),
            "{got:?}"
        );
        assert!(started.elapsed() >= REQUEST_READ_TIMEOUT);
    }
}
