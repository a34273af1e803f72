//! Prints the test vectors of `protocols/` from the current code, in the format the spec
//! documents use. Run it only to add a vector deliberately: `tests/protocol_vectors.rs`
//! checks the code against the committed documents, and a changed vector means a changed
//! format (a new version), not a refreshed file.

use libp2p::identity::ed25519;
use storgo::collections::version::NewVersion;
use storgo::collections::{CollectionId, Delegation, Entry, Latest, Listing};
use storgo::content::{
    BlockAddress, BlockKey, ChunkRef, ContentId, ConvergenceSecret, DirEntry, DirManifest,
    EntryKind, FileManifest, LinkManifest, Manifest, Tree,
};

fn print_chunk(name: &str, secret: &ConvergenceSecret, plaintext: &[u8]) -> (ChunkRef, Vec<u8>) {
    let (r, sealed) = storgo::content::seal_chunk(secret, plaintext, true);
    let mut body = sealed.clone();
    r.key.open_in_place(&mut body, &[]).expect("opens");
    println!("```vector {name}");
    println!("secret: {}", secret.to_hex());
    println!("plaintext: {}", hex::encode(plaintext));
    println!("key: {}", hex::encode(r.key.as_bytes()));
    println!("body: {}", hex::encode(&body));
    println!("sealed: {}", hex::encode(&sealed));
    println!("address: {}", r.address);
    println!("address-bytes: {}", hex::encode(r.address.to_cid_bytes()));
    println!("```\n");
    (r, sealed)
}

/// A striped item's vector (`stripes-v1.md`): data blocks in the planner's input order, each
/// stripe's parity, the map and its address.
fn print_stripes(name: &str, k: u8, m: u8, lens: &[usize]) {
    use storgo::content::stripe::{self, Shape};
    let shape = Shape::new(k, m).expect("a valid shape");
    let blocks: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|j| (j * 7 + i * 13) as u8).collect())
        .collect();
    let root = BlockAddress::of(b"root manifest block");
    let listed: Vec<(BlockAddress, u32)> = blocks
        .iter()
        .map(|b| (BlockAddress::of(b), b.len() as u32))
        .collect();
    println!("```vector {name}");
    println!("k: {k}");
    println!("m: {m}");
    println!("root: {}", hex::encode(root.digest()));
    for (i, b) in blocks.iter().enumerate() {
        println!("block-{i}: {}", hex::encode(b));
    }
    let mut stripes = Vec::new();
    for (s, data) in stripe::plan(shape, &listed)
        .expect("plan")
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<&[u8]> = data
            .iter()
            .map(|d| blocks[listed.iter().position(|(a, _)| *a == d.address).unwrap()].as_slice())
            .collect();
        let parity = stripe::parity(shape, &data, &bytes).expect("parity");
        for (j, p) in parity.iter().enumerate() {
            println!("parity-{s}-{j}: {}", hex::encode(p));
        }
        stripes.push((data, parity.iter().map(|p| BlockAddress::of(p)).collect()));
    }
    let map = stripe::map(shape, root, stripes);
    println!("map: {}", hex::encode(map.encode()));
    println!("map-address: {}", map.address());
    println!("```\n");
}

fn main() {
    print_collections();
    print_stripes("stripes-1", 2, 2, &[5, 8, 3]);
    print_stripes("stripes-2", 3, 2, &[6, 6, 9, 4, 6]);
    let secret = ConvergenceSecret::from_hex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    )
    .expect("constant secret");
    let plaintext = b"hello, storgo";
    let (chunk, sealed) = print_chunk("chunk-1", &secret, plaintext);
    let (address, key) = (chunk.address, chunk.key);
    // A chunk that compresses: the sealed body is the codec byte 01 and a zstd frame.
    print_chunk("chunk-2", &secret, "hello, storgo! ".repeat(20).as_bytes());

    let file = Manifest::File(FileManifest {
        name: "hello.txt".into(),
        size: plaintext.len() as u64,
        mode: Some(0o644),
        mtime: Some(1_700_000_000),
        chunks: Tree::Leaves(vec![ChunkRef {
            address,
            len: plaintext.len() as u32,
            key,
        }]),
    });
    let (faddr, fkey, fblock) = file.seal(&secret).expect("seal");
    println!("```vector manifest-file-1");
    println!("secret: {}", secret.to_hex());
    println!("manifest: {file:?}");
    println!("key: {}", hex::encode(fkey.as_bytes()));
    println!("body-cbor: {}", hex::encode(body_of(&fblock, &fkey)));
    println!("block: {}", hex::encode(&fblock));
    println!("address: {faddr}");
    println!("```\n");

    let dir = Manifest::Dir(DirManifest {
        name: "notes".into(),
        size: plaintext.len() as u64,
        mode: Some(0o755),
        mtime: Some(1_700_000_001),
        entries: Tree::Leaves(vec![DirEntry {
            name: "hello.txt".into(),
            kind: EntryKind::File,
            size: plaintext.len() as u64,
            address: faddr,
            key: fkey,
        }]),
    });
    let (daddr, dkey, dblock) = dir.seal(&secret).expect("seal");
    println!("```vector manifest-dir-1");
    println!("secret: {}", secret.to_hex());
    println!("key: {}", hex::encode(dkey.as_bytes()));
    println!("body-cbor: {}", hex::encode(body_of(&dblock, &dkey)));
    println!("block: {}", hex::encode(&dblock));
    println!("address: {daddr}");
    println!("```\n");

    // A symbolic link, and a folder holding it beside the file.
    let link = Manifest::Link(LinkManifest {
        name: "latest.txt".into(),
        target: "hello.txt".into(),
        mtime: Some(1_700_000_002),
    });
    let (laddr, lkey, lblock) = link.seal(&secret).expect("seal");
    println!("```vector manifest-link-1");
    println!("secret: {}", secret.to_hex());
    println!("manifest: {link:?}");
    println!("key: {}", hex::encode(lkey.as_bytes()));
    println!("body-cbor: {}", hex::encode(body_of(&lblock, &lkey)));
    println!("block: {}", hex::encode(&lblock));
    println!("address: {laddr}");
    println!("```\n");
    let with_link = Manifest::Dir(DirManifest {
        name: "notes".into(),
        size: plaintext.len() as u64,
        mode: Some(0o755),
        mtime: Some(1_700_000_001),
        entries: Tree::Leaves(vec![
            DirEntry {
                name: "hello.txt".into(),
                kind: EntryKind::File,
                size: plaintext.len() as u64,
                address: faddr,
                key: fkey,
            },
            DirEntry {
                name: "latest.txt".into(),
                kind: EntryKind::Link,
                size: 0,
                address: laddr,
                key: lkey,
            },
        ]),
    });
    let (waddr, wkey, wblock) = with_link.seal(&secret).expect("seal");
    println!("```vector manifest-dir-2");
    println!("secret: {}", secret.to_hex());
    println!("key: {}", hex::encode(wkey.as_bytes()));
    println!("body-cbor: {}", hex::encode(body_of(&wblock, &wkey)));
    println!("block: {}", hex::encode(&wblock));
    println!("address: {waddr}");
    println!("```\n");

    let id = ContentId::new(daddr, dkey);
    println!("```vector content-id-1");
    println!("root: {}", hex::encode(daddr.digest()));
    println!("key: {}", hex::encode(dkey.as_bytes()));
    println!("binary: {}", hex::encode(id.to_bytes()));
    println!("text: {id}");
    println!("```\n");

    use storgo::network::chunks::codec::{encode_request, encode_response};
    use storgo::network::chunks::{ChunkRequest, ChunkResponse, ErrorCode};
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "request-get-manifest",
            encode_request(&ChunkRequest::GetManifest(daddr)),
        ),
        (
            "request-get-chunk",
            encode_request(&ChunkRequest::GetChunk(address)),
        ),
        (
            "request-have",
            encode_request(&ChunkRequest::Have(vec![address, daddr])),
        ),
        (
            "response-block",
            encode_response(&ChunkResponse::Block(sealed.clone())),
        ),
        (
            "response-have",
            encode_response(&ChunkResponse::Have(vec![true, false, true])),
        ),
        (
            "response-not-found",
            encode_response(&ChunkResponse::NotFound),
        ),
        (
            "response-error",
            encode_response(&ChunkResponse::Error {
                code: ErrorCode::Busy,
                message: "try later".into(),
            }),
        ),
    ];
    for (name, frame) in frames {
        println!("```vector chunks-{name}");
        println!("frame: {}", hex::encode(frame));
        println!("```\n");
    }

    use storgo::network::replicate::codec as rc;
    use storgo::network::replicate::{RefuseReason, ReplicateRequest, ReplicateResponse};
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "request-hold",
            rc::encode_request(&ReplicateRequest::Hold {
                root: daddr,
                replication: 3,
                bytes: 1_048_576,
                lease_until: None,
                shard: None,
            }),
        ),
        (
            "request-hold-lease",
            rc::encode_request(&ReplicateRequest::Hold {
                root: daddr,
                replication: 3,
                bytes: 1_048_576,
                lease_until: Some(1_700_000_000),
                shard: None,
            }),
        ),
        (
            "request-hold-column",
            rc::encode_request(&ReplicateRequest::Hold {
                root: daddr,
                replication: 16,
                bytes: 1_048_576,
                lease_until: Some(1_700_000_000),
                shard: Some(storgo::content::stripe::ShardOf {
                    map: BlockAddress::from_digest([0x11; 32]),
                    column: 12,
                }),
            }),
        ),
        (
            "request-query",
            rc::encode_request(&ReplicateRequest::Query { root: daddr }),
        ),
        (
            "response-accepted",
            rc::encode_response(&ReplicateResponse::Accepted),
        ),
        (
            "response-refused",
            rc::encode_response(&ReplicateResponse::Refused {
                reason: RefuseReason::OverQuota,
                message: "full".into(),
            }),
        ),
        (
            "response-holding",
            rc::encode_response(&ReplicateResponse::Holding {
                complete: true,
                pinned: false,
                stripes: None,
            }),
        ),
        (
            "response-holding-column",
            rc::encode_response(&ReplicateResponse::Holding {
                complete: true,
                pinned: false,
                stripes: Some(storgo::network::HeldStripes {
                    map: BlockAddress::from_digest([0x11; 32]),
                    column: Some(12),
                }),
            }),
        ),
        (
            "response-holding-coder",
            rc::encode_response(&ReplicateResponse::Holding {
                complete: true,
                pinned: true,
                stripes: Some(storgo::network::HeldStripes {
                    map: BlockAddress::from_digest([0x11; 32]),
                    column: None,
                }),
            }),
        ),
        (
            "response-not-held",
            rc::encode_response(&ReplicateResponse::NotHeld),
        ),
    ];
    for (name, frame) in frames {
        println!("```vector replicate-{name}");
        println!("frame: {}", hex::encode(frame));
        println!("```\n");
    }
    announce_vectors(daddr);
}

fn announce_vectors(daddr: storgo::content::BlockAddress) {
    use storgo::network::announce::codec as ac;
    use storgo::network::announce::{AnnounceResponse, Announcement, RefuseReason};
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "request",
            ac::encode_request(&Announcement {
                roots: vec![
                    daddr,
                    storgo::content::BlockAddress::from_digest([0x11; 32]),
                ],
                addrs: vec!["/ip4/10.0.0.7/tcp/4001".parse().expect("addr")],
            }),
        ),
        (
            "response-stored",
            ac::encode_response(&AnnounceResponse::Stored { count: 2 }),
        ),
        (
            "response-refused",
            ac::encode_response(&AnnounceResponse::Refused {
                reason: RefuseReason::ShuttingDown,
                message: "stopping".into(),
            }),
        ),
    ];
    for (name, frame) in frames {
        println!("```vector announce-{name}");
        println!("frame: {}", hex::encode(frame));
        println!("```\n");
    }
}

/// The decrypted CBOR body of a single-link manifest block (header = 8 + 33 bytes).
fn body_of(block: &[u8], key: &storgo::content::BlockKey) -> Vec<u8> {
    let links = u32::from_be_bytes([block[4], block[5], block[6], block[7]]) as usize;
    let header = 8 + 33 * links;
    let mut body = block[header..].to_vec();
    key.open_in_place(&mut body, &block[..header])
        .expect("opens");
    body
}

fn kp(b: u8) -> ed25519::Keypair {
    let mut s = [b; 32];
    ed25519::SecretKey::try_from_bytes(&mut s).unwrap().into()
}

/// `collection-v1.md`: IDs, records (owner and delegate) and versions (public and private).
fn print_collections() {
    let owner = kp(1);
    let key = owner.public().to_bytes();
    let version_id = ContentId::new(
        BlockAddress::from_digest([3; 32]),
        BlockKey::from_bytes([4; 32]),
    );
    let public = CollectionId { key, read: None };
    let private = CollectionId {
        key,
        read: Some([2; 32]),
    };
    println!("```vector collection-id-1\nsecret: {}\npublic-key: {}\nread-key: {}\nid: {}\nprivate-id: {}\n```\n",
        hex::encode([1u8; 32]), hex::encode(key), hex::encode([2u8; 32]), public, private);
    let r = Latest::sign(key, 3, &version_id, &owner, None);
    println!(
        "```vector collection-record-1\nsecret: {}\nseq: 3\nversion-id: {}\nrecord: {}\n```\n",
        hex::encode([1u8; 32]),
        hex::encode(version_id.to_bytes()),
        hex::encode(&r.bytes)
    );
    let ta = kp(6);
    let d = Delegation::new(&owner, ta.public().to_bytes());
    let r = Latest::sign(key, 4, &version_id, &ta, Some(d));
    println!("```vector collection-record-delegate-1\nsecret: {}\ndelegate-secret: {}\nseq: 4\nversion-id: {}\nrecord: {}\n```\n",
        hex::encode([1u8; 32]), hex::encode([6u8; 32]), hex::encode(version_id.to_bytes()), hex::encode(&r.bytes));
    let listing = Listing {
        name: "Algorithms 101".into(),
        entries: vec![Entry {
            id: version_id.to_string(),
            title: "Lecture 1 notes".into(),
            tags: vec!["lecture".into()],
            note: String::new(),
            added: 1_700_000_000,
        }],
    };
    let v = NewVersion {
        collection: &public,
        seq: 1,
        prev: None,
        published: 1_700_000_000,
        delegates: vec![],
        listing: &listing,
    }
    .sign(&owner, None, [5; 32]);
    println!("```vector collection-version-1\nsecret: {}\nseq: 1\npublished: 1700000000\nversion: {}\n```\n", hex::encode([1u8; 32]), hex::encode(&v));
    let v = NewVersion {
        collection: &private,
        seq: 2,
        prev: Some(version_id),
        published: 1_700_000_001,
        delegates: vec![],
        listing: &listing,
    }
    .sign(&owner, None, [5; 32]);
    println!("```vector collection-version-private-1\nsecret: {}\nread-key: {}\nsalt: {}\nseq: 2\nprev: {}\npublished: 1700000001\nversion: {}\n```", hex::encode([1u8; 32]), hex::encode([2u8; 32]), hex::encode([5u8; 32]), hex::encode(version_id.to_bytes()), hex::encode(&v));
}
