//! The code matches every test vector in `protocols/*.md`.

use std::collections::HashMap;

use storgo::content::manifest::parse_links;
use storgo::content::{
    open_chunk, seal_chunk, BlockAddress, BlockKey, ContentId, ConvergenceSecret, Manifest,
};

fn vectors() -> Vec<(String, HashMap<String, String>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/protocols");
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).expect("protocols/") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read spec");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(name) = line.strip_prefix("```vector ") else {
                continue;
            };
            let mut fields = HashMap::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                if let Some((k, v)) = l.split_once(": ") {
                    fields.insert(k.to_owned(), v.to_owned());
                }
            }
            out.push((name.to_owned(), fields));
        }
    }
    out
}

fn h(fields: &HashMap<String, String>, k: &str) -> Vec<u8> {
    hex::decode(&fields[k]).unwrap_or_else(|_| panic!("{k} is hex"))
}

fn key32(fields: &HashMap<String, String>, k: &str) -> BlockKey {
    BlockKey::from_bytes(h(fields, k).try_into().expect("32 bytes"))
}

#[test]
fn code_matches_every_vector() {
    let all = vectors();
    let mut checked = 0;
    for (name, f) in &all {
        if name.starts_with("chunk-") {
            let secret = ConvergenceSecret::from_hex(&f["secret"]).unwrap();
            let plain = h(f, "plaintext");
            let key = secret.derive_key(&[], &h(f, "body"));
            assert_eq!(key, key32(f, "key"), "{name}: key");
            let (r, sealed) = seal_chunk(&secret, &plain, true);
            assert_eq!(sealed, h(f, "sealed"), "{name}: sealed");
            let addr = BlockAddress::of(&sealed);
            assert_eq!(r.address, addr);
            assert_eq!(addr.to_string(), f["address"], "{name}: address");
            assert_eq!(addr.to_cid_bytes().to_vec(), h(f, "address-bytes"));
            let mut body = sealed.clone();
            key.open_in_place(&mut body, &[]).unwrap();
            assert_eq!(body, h(f, "body"), "{name}: body (codec byte and data)");
            assert_eq!(&open_chunk(&r, sealed).unwrap()[..], &plain[..]);
        } else if name == "legacy-chunk-1" {
            // Made under the first key rule: still opens with the key its manifest names.
            let sealed = h(f, "sealed");
            let addr: BlockAddress = f["address"].parse().unwrap();
            assert!(addr.matches(&sealed), "{name}: address");
            let plain = h(f, "plaintext");
            let r = storgo::content::ChunkRef {
                address: addr,
                len: plain.len() as u32,
                key: key32(f, "key"),
            };
            assert_eq!(&open_chunk(&r, sealed).unwrap()[..], &plain[..], "{name}");
        } else if name == "legacy-manifest-1" {
            let block = h(f, "block");
            let addr: BlockAddress = f["address"].parse().unwrap();
            assert!(addr.matches(&block), "{name}: address");
            let m =
                Manifest::open(addr, &key32(f, "key"), &block).expect("a legacy manifest opens");
            assert_eq!(format!("{m:?}"), f["manifest"], "{name}");
        } else if name.starts_with("manifest-") {
            let secret = ConvergenceSecret::from_hex(&f["secret"]).unwrap();
            let block = h(f, "block");
            let addr: BlockAddress = f["address"].parse().unwrap();
            assert!(addr.matches(&block), "{name}: address");
            let key = key32(f, "key");
            let m = Manifest::open(addr, &key, &block).expect("opens");
            assert_eq!(parse_links(addr, &block).unwrap(), m.links());
            let (a2, k2, b2) = m.seal(&secret).unwrap();
            assert_eq!(
                (a2, k2),
                (addr, key),
                "{name}: re-seal gives the same address and key"
            );
            assert_eq!(b2, block, "{name}: re-seal gives the same bytes");
            let hl = 8 + 33 * m.links().len();
            let mut body = block[hl..].to_vec();
            key.open_in_place(&mut body, &block[..hl]).unwrap();
            assert_eq!(body, h(f, "body-cbor"), "{name}: body");
        } else if name.starts_with("content-id-") {
            let bin = h(f, "binary");
            let id = ContentId::from_bytes(&bin).unwrap();
            assert_eq!(id.root.digest().to_vec(), h(f, "root"));
            assert_eq!(id.key, key32(f, "key"));
            assert_eq!(id.to_string(), f["text"]);
            assert_eq!(f["text"].parse::<ContentId>().unwrap(), id);
        } else if let Some(kind) = name.strip_prefix("replicate-") {
            use storgo::network::replicate::codec::*;
            use storgo::network::replicate::{RefuseReason, ReplicateRequest, ReplicateResponse};
            let frame = h(f, "frame");
            let dir = all
                .iter()
                .find(|(k, _)| k == "manifest-dir-1")
                .expect("vector");
            let root: BlockAddress = dir.1["address"].parse().unwrap();
            if kind.starts_with("request") {
                let req = decode_request_frame(&frame).expect("request decodes");
                assert_eq!(encode_request(&req), frame, "{name}: re-encode");
                let want = match kind {
                    "request-hold" => ReplicateRequest::Hold {
                        root,
                        replication: 3,
                        bytes: 1_048_576,
                        lease_until: None,
                        shard: None,
                    },
                    "request-hold-lease" => ReplicateRequest::Hold {
                        root,
                        replication: 3,
                        bytes: 1_048_576,
                        lease_until: Some(1_700_000_000),
                        shard: None,
                    },
                    "request-hold-column" => ReplicateRequest::Hold {
                        root,
                        replication: 16,
                        bytes: 1_048_576,
                        lease_until: Some(1_700_000_000),
                        shard: Some(storgo::content::stripe::ShardOf {
                            map: BlockAddress::from_digest([0x11; 32]),
                            column: 12,
                        }),
                    },
                    "request-query" => ReplicateRequest::Query { root },
                    _ => panic!("unknown vector {name}"),
                };
                assert_eq!(req, want, "{name}");
            } else {
                let resp = decode_response_frame(&frame).expect("response decodes");
                assert_eq!(encode_response(&resp), frame, "{name}: re-encode");
                let want = match kind {
                    "response-accepted" => ReplicateResponse::Accepted,
                    "response-refused" => ReplicateResponse::Refused {
                        reason: RefuseReason::OverQuota,
                        message: "full".into(),
                    },
                    "response-holding" => ReplicateResponse::Holding {
                        complete: true,
                        pinned: false,
                        stripes: None,
                    },
                    "response-holding-column" => ReplicateResponse::Holding {
                        complete: true,
                        pinned: false,
                        stripes: Some(storgo::network::HeldStripes {
                            map: BlockAddress::from_digest([0x11; 32]),
                            column: Some(12),
                        }),
                    },
                    "response-holding-coder" => ReplicateResponse::Holding {
                        complete: true,
                        pinned: true,
                        stripes: Some(storgo::network::HeldStripes {
                            map: BlockAddress::from_digest([0x11; 32]),
                            column: None,
                        }),
                    },
                    "response-not-held" => ReplicateResponse::NotHeld,
                    _ => panic!("unknown vector {name}"),
                };
                assert_eq!(resp, want, "{name}");
            }
        } else if let Some(kind) = name.strip_prefix("announce-") {
            use storgo::network::announce::codec::*;
            use storgo::network::announce::{AnnounceResponse, Announcement, RefuseReason};
            let frame = h(f, "frame");
            let dir = all
                .iter()
                .find(|(k, _)| k == "manifest-dir-1")
                .expect("vector");
            let root: BlockAddress = dir.1["address"].parse().unwrap();
            if kind == "request" {
                let a = decode_request_frame(&frame).expect("request decodes");
                assert_eq!(encode_request(&a), frame, "{name}: re-encode");
                let want = Announcement {
                    roots: vec![root, BlockAddress::from_digest([0x11; 32])],
                    addrs: vec!["/ip4/10.0.0.7/tcp/4001".parse().unwrap()],
                };
                assert_eq!(a, want, "{name}");
            } else {
                let r = decode_response_frame(&frame).expect("response decodes");
                assert_eq!(encode_response(&r), frame, "{name}: re-encode");
                let want = match kind {
                    "response-stored" => AnnounceResponse::Stored { count: 2 },
                    "response-refused" => AnnounceResponse::Refused {
                        reason: RefuseReason::ShuttingDown,
                        message: "stopping".into(),
                    },
                    _ => panic!("unknown vector {name}"),
                };
                assert_eq!(r, want, "{name}");
            }
        } else if let Some(kind) = name.strip_prefix("chunks-") {
            use storgo::network::chunks::codec::*;
            use storgo::network::chunks::{ChunkRequest, ChunkResponse, ErrorCode};
            let frame = h(f, "frame");
            let by = |n: &str| {
                all.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v)
                    .expect("vector")
            };
            let chunk_addr: BlockAddress = by("chunk-1")["address"].parse().unwrap();
            let dir_addr: BlockAddress = by("manifest-dir-1")["address"].parse().unwrap();
            if kind.starts_with("request") {
                let req = decode_request_frame(&frame);
                let want = match kind {
                    "request-get-manifest" | "request-indefinite-lengths" => {
                        ChunkRequest::GetManifest(dir_addr)
                    }
                    "request-get-chunk" | "request-unknown-key" | "request-trailing-bytes" => {
                        ChunkRequest::GetChunk(chunk_addr)
                    }
                    "request-have" => ChunkRequest::Have(vec![chunk_addr, dir_addr]),
                    "request-unknown-op" | "request-cut-off" | "request-header-over-limit" => {
                        assert!(
                            matches!(req, ChunkRequest::Invalid(_) | ChunkRequest::Incomplete(_)),
                            "{name}: answered bad request, got {req:?}"
                        );
                        checked += 1;
                        continue;
                    }
                    _ => panic!("unknown vector {name}"),
                };
                assert_eq!(req, want, "{name}");
                // Decoders are lenient, encoders canonical: a vector that is not canonical
                // gives the canonical form it re-encodes to.
                let canonical = f.get("canonical").map(|_| h(f, "canonical"));
                assert_eq!(
                    encode_request(&req),
                    canonical.unwrap_or(frame),
                    "{name}: re-encode"
                );
            } else {
                let resp = decode_response_frame(&frame).expect("response decodes");
                assert_eq!(encode_response(&resp), frame, "{name}: re-encode");
                let want = match kind {
                    "response-block" => ChunkResponse::Block(h(by("chunk-1"), "sealed")),
                    "response-have" => ChunkResponse::Have(vec![true, false, true]),
                    "response-not-found" => ChunkResponse::NotFound,
                    "response-error" => ChunkResponse::Error {
                        code: ErrorCode::Busy,
                        message: "try later".into(),
                    },
                    "response-bad-request" => ChunkResponse::Error {
                        code: ErrorCode::BadRequest,
                        message: "over a limit".into(),
                    },
                    _ => panic!("unknown vector {name}"),
                };
                assert_eq!(resp, want, "{name}");
            }
        } else if name.starts_with("collection-") {
            check_collection_vector(name, f);
        } else if name.starts_with("stripes-") {
            check_stripes_vector(name, f);
        } else {
            panic!("unknown vector kind {name}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "found only {checked} vectors");
}

/// A striped item (`stripes-v1.md`): the plan, every parity block, the map's bytes and address;
/// and every stripe rebuilt from its parity alone (as many data blocks lost as parity allows).
fn check_stripes_vector(name: &str, f: &HashMap<String, String>) {
    use storgo::content::stripe::{self, Shape, StripeMap};
    let shape = Shape::new(f["k"].parse().unwrap(), f["m"].parse().unwrap()).unwrap();
    let root = BlockAddress::from_digest(h(f, "root").try_into().expect("32 bytes"));
    let blocks: Vec<Vec<u8>> = (0..)
        .map_while(|i| {
            f.get(&format!("block-{i}"))
                .map(|v| hex::decode(v).unwrap())
        })
        .collect();
    let listed: Vec<(BlockAddress, u32)> = blocks
        .iter()
        .map(|b| (BlockAddress::of(b), b.len() as u32))
        .collect();
    let mut stripes = Vec::new();
    for (s, data) in stripe::plan(shape, &listed)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<&[u8]> = data
            .iter()
            .map(|d| blocks[listed.iter().position(|(a, _)| *a == d.address).unwrap()].as_slice())
            .collect();
        let parity = stripe::parity(shape, &data, &bytes).unwrap();
        for (j, p) in parity.iter().enumerate() {
            assert_eq!(
                *p,
                h(f, &format!("parity-{s}-{j}")),
                "{name}: parity {s}-{j}"
            );
        }
        stripes.push((data, parity.iter().map(|p| BlockAddress::of(p)).collect()));
    }
    let map = stripe::map(shape, root, stripes);
    assert_eq!(map.encode(), h(f, "map"), "{name}: map");
    assert_eq!(
        map.address().to_string(),
        f["map-address"],
        "{name}: map address"
    );
    let read = StripeMap::decode(&h(f, "map")).unwrap();
    assert_eq!(read, map, "{name}: the map reads back");
    // Lose the first min(K', M) data blocks of each stripe; rebuild them from the rest.
    for (s, stripe) in read.stripes.iter().enumerate() {
        let k = stripe.data.len();
        let lost = k.min(shape.m as usize);
        let parity: Vec<Vec<u8>> = (0..shape.m as usize)
            .map(|j| h(f, &format!("parity-{s}-{j}")))
            .collect();
        let mut have: Vec<(usize, &[u8])> = Vec::new();
        for c in lost..k {
            let a = stripe.data[c].address;
            have.push((c, blocks.iter().find(|b| BlockAddress::of(b) == a).unwrap()));
        }
        for (j, p) in parity.iter().enumerate() {
            have.push((k + j, p));
        }
        let rebuilt = stripe::rebuild(&read, s, &have).unwrap();
        assert_eq!(rebuilt.len(), lost, "{name}: stripe {s}");
        for (c, b) in rebuilt {
            assert!(
                stripe.data[c].address.matches(&b),
                "{name}: stripe {s} column {c}"
            );
        }
    }
}

fn keypair(f: &HashMap<String, String>, k: &str) -> libp2p::identity::ed25519::Keypair {
    let mut secret = h(f, k);
    libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut secret)
        .expect("an Ed25519 secret")
        .into()
}

/// `collection-v1.md`: IDs, records and versions are made byte for byte as the spec shows,
/// and what the spec shows opens to what it says.
fn check_collection_vector(name: &str, f: &HashMap<String, String>) {
    use storgo::collections::record::dht_key;
    use storgo::collections::version::NewVersion;
    use storgo::collections::{CollectionId, Delegation, Entry, Latest, Listing, Signer, Version};
    let owner = keypair(f, "secret");
    let key = owner.public().to_bytes();
    let num = |k: &str| f[k].parse::<u64>().expect("a number");
    let entry_id = ContentId::new(
        BlockAddress::from_digest([3; 32]),
        BlockKey::from_bytes([4; 32]),
    );
    let the_listing = Listing {
        name: "Algorithms 101".into(),
        entries: vec![Entry {
            id: entry_id.to_string(),
            title: "Lecture 1 notes".into(),
            tags: vec!["lecture".into()],
            note: String::new(),
            added: 1_700_000_000,
        }],
    };
    match name {
        "collection-id-1" => {
            assert_eq!(hex::encode(key), f["public-key"], "{name}: public key");
            let public = CollectionId { key, read: None };
            let read: [u8; 32] = h(f, "read-key").try_into().unwrap();
            let private = CollectionId {
                key,
                read: Some(read),
            };
            assert_eq!(public.to_string(), f["id"], "{name}: id");
            assert_eq!(private.to_string(), f["private-id"], "{name}: private id");
            assert_eq!(f["private-id"].parse::<CollectionId>().unwrap(), private);
        }
        "collection-record-1" | "collection-record-delegate-1" => {
            let version = ContentId::from_bytes(&h(f, "version-id")).unwrap();
            let (signer, delegation) = match f.get("delegate-secret") {
                Some(_) => {
                    let d = keypair(f, "delegate-secret");
                    let delegation = Delegation::new(&owner, d.public().to_bytes());
                    (d, Some(delegation))
                }
                None => (owner.clone(), None),
            };
            let made = Latest::sign(key, num("seq"), &version, &signer, delegation);
            assert_eq!(hex::encode(&made.bytes), f["record"], "{name}: record");
            let opened = Latest::open_at(&dht_key(&key), &h(f, "record")).unwrap();
            assert_eq!((opened.seq, opened.version), (num("seq"), version));
            let want = if f.contains_key("delegate-secret") {
                Signer::Delegate(signer.public().to_bytes())
            } else {
                Signer::Owner
            };
            assert_eq!(opened.signer, want, "{name}: signer");
        }
        "collection-version-1" | "collection-version-private-1" => {
            let read = f
                .get("read-key")
                .map(|_| <[u8; 32]>::try_from(h(f, "read-key")).unwrap());
            let id = CollectionId { key, read };
            let salt: [u8; 32] = f
                .get("salt")
                .map_or([5; 32], |_| h(f, "salt").try_into().unwrap());
            let prev = f
                .get("prev")
                .map(|_| ContentId::from_bytes(&h(f, "prev")).unwrap());
            let made = NewVersion {
                collection: &id,
                seq: num("seq"),
                prev,
                published: num("published"),
                delegates: vec![],
                listing: &the_listing,
            }
            .sign(&owner, None, salt);
            assert_eq!(hex::encode(&made), f["version"], "{name}: version");
            let v = Version::open(&h(f, "version"), &id).unwrap();
            assert_eq!(v.seq, num("seq"));
            assert_eq!(v.prev, prev);
            assert_eq!(v.listing.as_ref(), Some(&the_listing), "{name}: listing");
            if read.is_some() {
                let sealed = Version::open(&h(f, "version"), &id.public()).unwrap();
                assert!(
                    sealed.listing.is_none(),
                    "{name}: sealed without the read key"
                );
            }
        }
        _ => panic!("unknown vector {name}"),
    }
}
