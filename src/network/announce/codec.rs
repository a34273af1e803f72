//! Wire format of `/storgo/announce/1.0.0` (see `protocols/announce-v1.md`).
//!
//! One frame each way, `length (u32 BE, <= MAX_FRAME) | CBOR map`. Every count and length is
//! checked while decoding; unknown map keys are ignored so that later versions can add fields.

use std::io;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{
    AnnounceResponse, Announcement, RefuseReason, MAX_ADDRS, MAX_ADDR_BYTES, MAX_FRAME,
    MAX_MESSAGE, MAX_ROOTS,
};
use crate::content::BlockAddress;
use crate::network::framing::{frame, invalid, unframe, MapCodec, MapMessages};
use crate::network::provider_key;

const ST_STORED: u8 = 0;
const ST_REFUSED: u8 = 1;

#[derive(Serialize, Deserialize)]
struct RequestMap {
    #[serde(rename = "k")]
    keys: Vec<ByteBuf>,
    #[serde(rename = "a", default)]
    addrs: Vec<ByteBuf>,
}

#[derive(Serialize, Deserialize)]
struct ResponseMap {
    #[serde(rename = "s")]
    status: u8,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    reason: Option<u8>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// A root from its provider key (`12 20 || digest`, `dht-v1.md`).
fn root_of_key(key: &[u8]) -> io::Result<BlockAddress> {
    match key {
        [0x12, 0x20, digest @ ..] => {
            let digest: [u8; 32] = digest
                .try_into()
                .map_err(|_| invalid(format!("provider key of {} bytes, not 34", key.len())))?;
            Ok(BlockAddress::from_digest(digest))
        }
        _ => Err(invalid("provider key is not a SHA-256 multihash")),
    }
}

/// Encodes an announcement. Callers split longer lists: at most [`MAX_ROOTS`] roots and
/// [`MAX_ADDRS`] addresses are written.
pub fn encode_request(a: &Announcement) -> Vec<u8> {
    frame(&RequestMap {
        keys: a
            .roots
            .iter()
            .take(MAX_ROOTS)
            .map(|r| ByteBuf::from(provider_key(r).to_vec()))
            .collect(),
        addrs: a
            .addrs
            .iter()
            .map(|m| m.to_vec())
            .filter(|b| b.len() <= MAX_ADDR_BYTES)
            .take(MAX_ADDRS)
            .map(ByteBuf::from)
            .collect(),
    })
}

pub fn decode_request(map: &[u8]) -> io::Result<Announcement> {
    let m: RequestMap = ciborium::from_reader(map).map_err(|e| invalid(format!("request: {e}")))?;
    if m.keys.len() > MAX_ROOTS {
        return Err(invalid(format!(
            "{} roots in one announcement; at most {MAX_ROOTS}",
            m.keys.len()
        )));
    }
    if m.addrs.len() > MAX_ADDRS {
        return Err(invalid(format!(
            "{} addresses; at most {MAX_ADDRS}",
            m.addrs.len()
        )));
    }
    let roots = m
        .keys
        .iter()
        .map(|k| root_of_key(k))
        .collect::<io::Result<Vec<_>>>()?;
    let addrs = m
        .addrs
        .into_iter()
        .map(|a| {
            if a.len() > MAX_ADDR_BYTES {
                return Err(invalid(format!("address of {} bytes", a.len())));
            }
            Multiaddr::try_from(a.into_vec()).map_err(|e| invalid(format!("address: {e}")))
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Announcement { roots, addrs })
}

pub fn encode_response(r: &AnnounceResponse) -> Vec<u8> {
    frame(&match r {
        AnnounceResponse::Stored { count } => ResponseMap {
            status: ST_STORED,
            count: Some(*count),
            reason: None,
            message: None,
        },
        AnnounceResponse::Refused { reason, message } => ResponseMap {
            status: ST_REFUSED,
            count: None,
            reason: Some(*reason as u8),
            message: Some(message.chars().take(MAX_MESSAGE).collect()),
        },
    })
}

pub fn decode_response(map: &[u8]) -> io::Result<AnnounceResponse> {
    let m: ResponseMap =
        ciborium::from_reader(map).map_err(|e| invalid(format!("response: {e}")))?;
    match m.status {
        ST_STORED => Ok(AnnounceResponse::Stored {
            count: m.count.ok_or_else(|| invalid("stored without n"))?,
        }),
        ST_REFUSED => Ok(AnnounceResponse::Refused {
            reason: m
                .reason
                .and_then(RefuseReason::from_u8)
                .ok_or_else(|| invalid("refusal without a known reason"))?,
            message: m
                .message
                .unwrap_or_default()
                .chars()
                .take(MAX_MESSAGE)
                .collect(),
        }),
        s => Err(invalid(format!("unknown status {s}"))),
    }
}

/// Decodes a whole request frame held in memory (tests and the spec's vectors).
pub fn decode_request_frame(frame: &[u8]) -> io::Result<Announcement> {
    decode_request(unframe(frame, MAX_FRAME)?)
}

/// Decodes a whole response frame held in memory.
pub fn decode_response_frame(frame: &[u8]) -> io::Result<AnnounceResponse> {
    decode_response(unframe(frame, MAX_FRAME)?)
}

/// The messages of this protocol, for [`MapCodec`].
#[derive(Debug, Clone, Default)]
pub struct Announce;

impl MapMessages for Announce {
    type Request = Announcement;
    type Response = AnnounceResponse;
    const MAX_FRAME: usize = MAX_FRAME;

    fn encode_request(r: &Announcement) -> Vec<u8> {
        encode_request(r)
    }
    fn decode_request(map: &[u8]) -> io::Result<Announcement> {
        decode_request(map)
    }
    fn encode_response(r: &AnnounceResponse) -> Vec<u8> {
        encode_response(r)
    }
    fn decode_response(map: &[u8]) -> io::Result<AnnounceResponse> {
        decode_response(map)
    }
}

/// The request-response codec of this protocol.
pub type AnnounceCodec = MapCodec<Announce>;

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Announcement {
        Announcement {
            roots: (0..MAX_ROOTS as u32)
                .map(|i| {
                    let mut d = [0xff; 32];
                    d[..4].copy_from_slice(&i.to_be_bytes());
                    BlockAddress::from_digest(d)
                })
                .collect(),
            addrs: (0..MAX_ADDRS as u16)
                .map(|p| {
                    format!("/ip6/fe80::1234:5678:9abc:def0/udp/{p}/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
                        .parse()
                        .unwrap()
                })
                .collect(),
        }
    }

    #[test]
    fn the_largest_announcement_fits_a_frame_and_round_trips() {
        let a = full();
        let bytes = encode_request(&a);
        assert!(bytes.len() <= MAX_FRAME + 4, "{} bytes", bytes.len());
        assert_eq!(decode_request_frame(&bytes).unwrap(), a);
        for r in [
            AnnounceResponse::Stored { count: 4096 },
            AnnounceResponse::Refused {
                reason: RefuseReason::ShuttingDown,
                message: "stopping".into(),
            },
        ] {
            assert_eq!(decode_response_frame(&encode_response(&r)).unwrap(), r);
        }
    }

    #[test]
    fn limits_and_bad_keys_are_refused() {
        let too_many = frame(&RequestMap {
            keys: vec![
                ByteBuf::from(
                    vec![0x12, 0x20]
                        .into_iter()
                        .chain([0; 32])
                        .collect::<Vec<_>>()
                );
                MAX_ROOTS + 1
            ],
            addrs: vec![],
        });
        assert!(decode_request_frame(&too_many).is_err());
        for key in [vec![0x12, 0x20, 1], vec![0x13; 34], vec![]] {
            let bad = frame(&RequestMap {
                keys: vec![ByteBuf::from(key)],
                addrs: vec![],
            });
            assert!(decode_request_frame(&bad).is_err());
        }
        let bad_addr = frame(&RequestMap {
            keys: vec![],
            addrs: vec![ByteBuf::from(vec![0xff, 0xff, 0xff])],
        });
        assert!(decode_request_frame(&bad_addr).is_err());
        let mut over = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        over.extend(vec![0; 8]);
        assert!(decode_request_frame(&over).is_err());
        assert!(decode_response_frame(&frame(&ResponseMap {
            status: 9,
            count: None,
            reason: None,
            message: None
        }))
        .is_err());
    }
}
