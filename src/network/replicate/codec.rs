//! Wire format of `/storgo/replicate/1.0.0` (see `protocols/replicate-v1.md`).
//!
//! Every message is one frame on its own stream: `length (u32 BE, <= MAX_FRAME) | CBOR map`.
//! Lengths are checked before anything is allocated; unknown map keys are ignored so that
//! later versions can add fields.

use std::io;

use serde::{Deserialize, Serialize};

use super::{
    HeldStripes, RefuseReason, ReplicateRequest, ReplicateResponse, MAX_FRAME, MAX_MESSAGE,
    MAX_REPLICATION,
};
use crate::content::stripe::ShardOf;
use crate::content::BlockAddress;
use crate::network::framing::{frame, invalid, unframe, MapCodec, MapMessages};

const OP_HOLD: u8 = 1;
const OP_QUERY: u8 = 2;

const ST_ACCEPTED: u8 = 0;
const ST_REFUSED: u8 = 1;
const ST_HOLDING: u8 = 2;
const ST_NOT_HELD: u8 = 3;

#[derive(Serialize, Deserialize)]
struct RequestMap {
    op: u8,
    #[serde(rename = "r")]
    root: serde_bytes::ByteBuf,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    replication: Option<u8>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<u64>,
    /// The stripe map (CID bytes) of a column hold.
    #[serde(rename = "sm", default, skip_serializing_if = "Option::is_none")]
    map: Option<serde_bytes::ByteBuf>,
    /// The column to hold.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    column: Option<u8>,
}

#[derive(Serialize, Deserialize)]
struct ResponseMap {
    #[serde(rename = "s")]
    status: u8,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pinned: Option<bool>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    reason: Option<u8>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// The stripe map (CID bytes) of a striped item held.
    #[serde(rename = "sm", default, skip_serializing_if = "Option::is_none")]
    map: Option<serde_bytes::ByteBuf>,
    /// The column held (absent with `sm`: every column).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    column: Option<u8>,
}

fn cid(a: &BlockAddress) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(a.to_cid_bytes().to_vec())
}

/// A column number a `K + M` of at most [`MAX_REPLICATION`] can have.
fn column_in_range(c: u8) -> io::Result<u8> {
    if c >= MAX_REPLICATION {
        return Err(invalid(format!("column {c} outside 0..{MAX_REPLICATION}")));
    }
    Ok(c)
}

pub fn encode_request(req: &ReplicateRequest) -> Vec<u8> {
    frame(&match req {
        ReplicateRequest::Hold {
            root: r,
            replication,
            bytes,
            lease_until,
            shard,
        } => RequestMap {
            op: OP_HOLD,
            root: cid(r),
            replication: Some(*replication),
            bytes: Some(*bytes),
            lease_until: *lease_until,
            map: shard.map(|s| cid(&s.map)),
            column: shard.map(|s| s.column),
        },
        ReplicateRequest::Query { root: r } => RequestMap {
            op: OP_QUERY,
            root: cid(r),
            replication: None,
            bytes: None,
            lease_until: None,
            map: None,
            column: None,
        },
    })
}

pub fn decode_request(map: &[u8]) -> io::Result<ReplicateRequest> {
    let m: RequestMap = ciborium::from_reader(map).map_err(|e| invalid(format!("request: {e}")))?;
    let root = BlockAddress::from_cid_bytes(&m.root).map_err(|e| invalid(e.to_string()))?;
    match m.op {
        OP_HOLD => {
            let replication = m.replication.ok_or_else(|| invalid("hold without n"))?;
            if replication == 0 || replication > MAX_REPLICATION {
                return Err(invalid(format!(
                    "replication {replication} outside 1..={MAX_REPLICATION}"
                )));
            }
            let shard = match (m.map, m.column) {
                (None, None) => None,
                (Some(map), Some(column)) => {
                    let column = column_in_range(column)?;
                    if column >= replication {
                        return Err(invalid(format!(
                            "column {column} of a {replication}-column item"
                        )));
                    }
                    Some(ShardOf {
                        map: BlockAddress::from_cid_bytes(&map)
                            .map_err(|e| invalid(format!("sm: {e}")))?,
                        column,
                    })
                }
                _ => return Err(invalid("a column hold needs both sm and x")),
            };
            Ok(ReplicateRequest::Hold {
                root,
                replication,
                bytes: m.bytes.ok_or_else(|| invalid("hold without b"))?,
                lease_until: m.lease_until,
                shard,
            })
        }
        OP_QUERY => Ok(ReplicateRequest::Query { root }),
        op => Err(invalid(format!("unknown op {op}"))),
    }
}

pub fn encode_response(resp: &ReplicateResponse) -> Vec<u8> {
    let plain = |status| ResponseMap {
        status,
        complete: None,
        pinned: None,
        reason: None,
        message: None,
        map: None,
        column: None,
    };
    frame(&match resp {
        ReplicateResponse::Accepted => plain(ST_ACCEPTED),
        ReplicateResponse::Refused { reason, message } => ResponseMap {
            reason: Some(*reason as u8),
            message: Some(message.chars().take(MAX_MESSAGE).collect()),
            ..plain(ST_REFUSED)
        },
        ReplicateResponse::Holding {
            complete,
            pinned,
            stripes,
        } => ResponseMap {
            complete: Some(*complete),
            pinned: Some(*pinned),
            map: stripes.map(|s| cid(&s.map)),
            column: stripes.and_then(|s| s.column),
            ..plain(ST_HOLDING)
        },
        ReplicateResponse::NotHeld => plain(ST_NOT_HELD),
    })
}

pub fn decode_response(map: &[u8]) -> io::Result<ReplicateResponse> {
    let m: ResponseMap =
        ciborium::from_reader(map).map_err(|e| invalid(format!("response: {e}")))?;
    match m.status {
        ST_ACCEPTED => Ok(ReplicateResponse::Accepted),
        ST_REFUSED => Ok(ReplicateResponse::Refused {
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
        ST_HOLDING => Ok(ReplicateResponse::Holding {
            complete: m.complete.ok_or_else(|| invalid("holding without c"))?,
            pinned: m.pinned.unwrap_or(false),
            stripes: match (m.map, m.column) {
                (None, None) => None,
                (Some(map), column) => Some(HeldStripes {
                    map: BlockAddress::from_cid_bytes(&map)
                        .map_err(|e| invalid(format!("sm: {e}")))?,
                    column: column.map(column_in_range).transpose()?,
                }),
                (None, Some(_)) => return Err(invalid("a column without its stripe map")),
            },
        }),
        ST_NOT_HELD => Ok(ReplicateResponse::NotHeld),
        s => Err(invalid(format!("unknown status {s}"))),
    }
}

/// Decodes a whole request frame held in memory (tests and the spec's vectors).
pub fn decode_request_frame(frame: &[u8]) -> io::Result<ReplicateRequest> {
    decode_request(unframe(frame, MAX_FRAME)?)
}

/// Decodes a whole response frame held in memory.
pub fn decode_response_frame(frame: &[u8]) -> io::Result<ReplicateResponse> {
    decode_response(unframe(frame, MAX_FRAME)?)
}

/// The messages of this protocol, for [`MapCodec`].
#[derive(Debug, Clone, Default)]
pub struct Replicate;

impl MapMessages for Replicate {
    type Request = ReplicateRequest;
    type Response = ReplicateResponse;
    const MAX_FRAME: usize = MAX_FRAME;

    fn encode_request(r: &ReplicateRequest) -> Vec<u8> {
        encode_request(r)
    }
    fn decode_request(map: &[u8]) -> io::Result<ReplicateRequest> {
        decode_request(map)
    }
    fn encode_response(r: &ReplicateResponse) -> Vec<u8> {
        encode_response(r)
    }
    fn decode_response(map: &[u8]) -> io::Result<ReplicateResponse> {
        decode_response(map)
    }
}

/// The request-response codec of this protocol.
pub type ReplicateCodec = MapCodec<Replicate>;

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> BlockAddress {
        BlockAddress::from_digest([7; 32])
    }

    #[test]
    fn every_message_round_trips() {
        for req in [
            ReplicateRequest::Hold {
                root: root(),
                replication: 3,
                bytes: 1 << 40,
                lease_until: None,
                shard: None,
            },
            ReplicateRequest::Hold {
                root: root(),
                replication: 3,
                bytes: 1,
                lease_until: Some(1_700_000_000),
                shard: None,
            },
            ReplicateRequest::Hold {
                root: root(),
                replication: 16,
                bytes: 1,
                lease_until: Some(1_700_000_000),
                shard: Some(ShardOf {
                    map: BlockAddress::from_digest([9; 32]),
                    column: 15,
                }),
            },
            ReplicateRequest::Query { root: root() },
        ] {
            assert_eq!(decode_request_frame(&encode_request(&req)).unwrap(), req);
        }
        for resp in [
            ReplicateResponse::Accepted,
            ReplicateResponse::Refused {
                reason: RefuseReason::OverQuota,
                message: "full".into(),
            },
            ReplicateResponse::Holding {
                complete: true,
                pinned: false,
                stripes: None,
            },
            ReplicateResponse::Holding {
                complete: false,
                pinned: true,
                stripes: None,
            },
            ReplicateResponse::Holding {
                complete: true,
                pinned: false,
                stripes: Some(HeldStripes {
                    map: BlockAddress::from_digest([9; 32]),
                    column: Some(3),
                }),
            },
            ReplicateResponse::Holding {
                complete: true,
                pinned: true,
                stripes: Some(HeldStripes {
                    map: BlockAddress::from_digest([9; 32]),
                    column: None,
                }),
            },
            ReplicateResponse::NotHeld,
        ] {
            assert_eq!(
                decode_response_frame(&encode_response(&resp)).unwrap(),
                resp
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        let zero = encode_request(&ReplicateRequest::Hold {
            root: root(),
            replication: 0,
            bytes: 1,
            lease_until: None,
            shard: None,
        });
        assert!(decode_request_frame(&zero).is_err());
        let big = encode_request(&ReplicateRequest::Hold {
            root: root(),
            replication: MAX_REPLICATION + 1,
            bytes: 1,
            lease_until: None,
            shard: None,
        });
        assert!(decode_request_frame(&big).is_err());
        let mut over = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        over.extend(vec![0; MAX_FRAME + 1]);
        assert!(decode_request_frame(&over).is_err());
        assert!(decode_response_frame(&[0, 0]).is_err());
        // A column past the item's K + M, and a column without its map.
        let past = encode_request(&ReplicateRequest::Hold {
            root: root(),
            replication: 6,
            bytes: 1,
            lease_until: None,
            shard: Some(ShardOf {
                map: root(),
                column: 6,
            }),
        });
        assert!(decode_request_frame(&past).is_err());
        let lone = frame(&RequestMap {
            op: OP_HOLD,
            root: cid(&root()),
            replication: Some(6),
            bytes: Some(1),
            lease_until: None,
            map: None,
            column: Some(1),
        });
        assert!(decode_request_frame(&lone).is_err());
    }
}
