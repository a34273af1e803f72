//! Decoders of everything that comes from outside never panic, and encoders round-trip.

use proptest::prelude::*;
use storgo::content::manifest::parse_links;
use storgo::content::{
    BlockAddress, BlockKey, ChunkRef, ContentId, ConvergenceSecret, DirEntry, DirManifest,
    EntryKind, FileManifest, Manifest, Tree,
};

fn secret() -> ConvergenceSecret {
    ConvergenceSecret::from_bytes([42; 32])
}

prop_compose! {
    fn chunk_ref()(d in any::<[u8; 32]>(), len in 1u32..=4_194_304, k in any::<[u8; 32]>()) -> ChunkRef {
        ChunkRef { address: BlockAddress::from_digest(d), len, key: BlockKey::from_bytes(k) }
    }
}

prop_compose! {
    fn file_manifest()(name in "[a-zA-Z0-9 ._-]{0,40}", size in any::<u64>(), mode in proptest::option::of(0u32..0o7777),
                       mtime in proptest::option::of(any::<i64>()),
                       chunks in proptest::collection::vec(chunk_ref(), 0..50)) -> Manifest {
        let name = if name == "." || name == ".." { String::new() } else { name };
        Manifest::File(FileManifest { name, size, mode, mtime, chunks: Tree::Leaves(chunks) })
    }
}

prop_compose! {
    fn dir_manifest()(entries in proptest::collection::vec(("[a-z]{1,20}", any::<bool>(), any::<u64>(), any::<[u8; 32]>()), 0..30)) -> Manifest {
        Manifest::Dir(DirManifest {
            name: "d".into(), size: 0, mode: None, mtime: None,
            entries: Tree::Leaves(entries.into_iter().map(|(n, f, s, d)| DirEntry {
                name: n, kind: if f { EntryKind::File } else { EntryKind::Dir }, size: s,
                address: BlockAddress::from_digest(d), key: BlockKey::from_bytes(d),
            }).collect()),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn content_id_parse_never_panics(s in "\\PC{0,200}") {
        let _ = s.parse::<ContentId>();
        let _ = format!("sg1{s}").parse::<ContentId>();
    }

    #[test]
    fn content_id_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = ContentId::from_bytes(&b);
    }

    #[test]
    fn content_id_round_trips(root in any::<[u8; 32]>(), key in any::<[u8; 32]>()) {
        let id = ContentId::new(BlockAddress::from_digest(root), BlockKey::from_bytes(key));
        prop_assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
        prop_assert_eq!(ContentId::from_bytes(&id.to_bytes()).unwrap(), id);
    }

    #[test]
    fn manifest_decode_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..2000), magic in any::<bool>(), k in any::<[u8; 32]>()) {
        if magic && b.len() >= 8 {
            b[..4].copy_from_slice(b"SGM1");
            let n = (b[4] % 4) as u32;
            b[4..8].copy_from_slice(&n.to_be_bytes());
        }
        let a = BlockAddress::of(&b);
        let _ = parse_links(a, &b);
        let _ = Manifest::open(a, &BlockKey::from_bytes(k), &b);
    }

    #[test]
    fn sealed_garbage_bodies_are_errors(body in proptest::collection::vec(any::<u8>(), 0..500)) {
        // A key holder can seal any body: it must be rejected as malformed, not panic.
        let mut block = b"SGM1\0\0\0\0".to_vec();
        let key = secret().derive_key(&block, &body);
        let mut sealed = body.clone();
        key.seal_in_place(&mut sealed, &block);
        block.extend_from_slice(&sealed);
        let a = BlockAddress::of(&block);
        prop_assert!(Manifest::open(a, &key, &block).is_err());
    }

    #[test]
    fn file_manifests_round_trip(m in file_manifest()) {
        let (a, k, block) = m.seal(&secret()).unwrap();
        prop_assert_eq!(Manifest::open(a, &k, &block).unwrap(), m.clone());
        prop_assert_eq!(parse_links(a, &block).unwrap(), m.links());
    }

    #[test]
    fn dir_manifests_round_trip(m in dir_manifest()) {
        let (a, k, block) = m.seal(&secret()).unwrap();
        prop_assert_eq!(Manifest::open(a, &k, &block).unwrap(), m);
    }
}
