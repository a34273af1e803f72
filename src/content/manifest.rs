//! Manifests: what a file or folder is made of, sealed like any other block.
//!
//! A manifest block has a public header listing its links (the blocks it names, in order,
//! each marked chunk or manifest) followed by the sealed CBOR body. The header is what lets a
//! node that holds an item for someone else, without its key, find every block of the item
//! (for replication and garbage collection); it is bound to the body as associated data, so it
//! cannot be changed without the key. The body — names, sizes, modes, chunk keys — is readable
//! only with the manifest's key. Long chunk or entry lists are split into a tree of pages
//! ([`Tree`]) so that no manifest block grows past [`MAX_MANIFEST_BLOCK`].
//!
//! Byte layout, limits and test vectors: `protocols/manifest-v2.md`.

use serde::{Deserialize, Serialize};

use super::address::BlockAddress;
use super::crypto::{BlockKey, ConvergenceSecret, TAG_LEN};
use super::{ContentError, CHUNK_MAX};

/// First bytes of every manifest block.
pub const MANIFEST_MAGIC: [u8; 4] = *b"SGM1";
/// Version of the manifest body format (the `v` field).
pub const FORMAT_VERSION: u64 = 2;
/// Largest manifest block written or accepted.
pub const MAX_MANIFEST_BLOCK: usize = 2 * 1024 * 1024;
/// Chunk references per page before a file's chunk list is split into pages.
pub const MAX_CHUNKS_PER_PAGE: usize = 4096;
/// Directory entries per page before a folder's entry list is split into pages.
pub const MAX_ENTRIES_PER_PAGE: usize = 1024;
/// Page references per page; beyond this the tree gains a level.
pub const MAX_PAGE_REFS: usize = 4096;
/// Most links one manifest block may list.
pub const MAX_LINKS: usize = 4096;
/// Deepest page tree accepted (4096^4 chunks is far beyond any file).
pub const MAX_TREE_DEPTH: usize = 4;
/// Longest file or folder name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest symbolic-link target, in bytes (Linux's PATH_MAX).
pub const MAX_LINK_TARGET: usize = 4096;

const HEADER_FIXED: usize = 8;
const LINK_LEN: usize = 33;

/// What a link points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Chunk,
    Manifest,
}

/// One block a manifest names, as listed in its public header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub kind: LinkKind,
    pub address: BlockAddress,
}

/// One chunk of a file: where it is, how many plaintext bytes it holds, the key to open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub address: BlockAddress,
    pub len: u32,
    pub key: BlockKey,
}

/// A page of a chunk or entry list: its manifest block, key, and how much it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    pub address: BlockAddress,
    pub key: BlockKey,
    /// Plaintext bytes of the file (or of the folder's entries) the page covers.
    pub bytes: u64,
    /// Leaves (chunks or entries) the page covers.
    pub leaves: u64,
}

/// A list that is either inline or split into pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tree<T> {
    #[serde(rename = "l")]
    Leaves(Vec<T>),
    #[serde(rename = "p")]
    Pages(Vec<PageRef>),
}

/// A file: its metadata and its chunks in order. (Version 1 also carried a SHA-256 of the
/// whole plaintext, which nothing read and which cost a full hash pass per byte added;
/// `storgo stat --sha256` computes it on demand instead. DESIGN.md, "Performance notes".)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    pub name: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    pub chunks: Tree<ChunkRef>,
}

/// Whether a folder entry is a file, a folder or a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    #[serde(rename = "f")]
    File,
    #[serde(rename = "d")]
    Dir,
    #[serde(rename = "l")]
    Link,
}

impl EntryKind {
    /// The kind in the user's words (`storgo ls`, the API).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Link => "link",
        }
    }
}

/// A symbolic link inside a folder: its name and where it points, kept as the text it was
/// (as tar and kubo keep links). It is restored as a link and never followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkManifest {
    pub name: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
}

/// One entry of a folder: its name and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Total plaintext bytes under the entry.
    pub size: u64,
    pub address: BlockAddress,
    pub key: BlockKey,
}

/// A folder: its metadata and its entries, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirManifest {
    pub name: String,
    /// Total plaintext bytes of every file below.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    pub entries: Tree<DirEntry>,
}

/// Every kind of manifest block body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Manifest {
    #[serde(rename = "file")]
    File(FileManifest),
    #[serde(rename = "dir")]
    Dir(DirManifest),
    #[serde(rename = "chunks")]
    ChunkPage(Tree<ChunkRef>),
    #[serde(rename = "entries")]
    EntryPage(Tree<DirEntry>),
    #[serde(rename = "link")]
    Link(LinkManifest),
}

#[derive(Serialize, Deserialize)]
struct Body {
    v: u64,
    m: Manifest,
}

fn malformed(address: BlockAddress, reason: impl Into<String>) -> ContentError {
    ContentError::MalformedManifest {
        address,
        reason: reason.into(),
    }
}

/// Checks a symbolic link's target: not empty, at most [`MAX_LINK_TARGET`] bytes, no NUL.
/// Where it points is not checked: a link is restored as it was and never followed.
pub fn validate_link_target(target: &str) -> Result<(), &'static str> {
    if target.is_empty() {
        Err("is empty")
    } else if target.len() > MAX_LINK_TARGET {
        Err("is longer than 4096 bytes")
    } else if target.contains('\0') {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

/// Checks a file or folder name before it is written into a manifest or onto a disk.
pub fn validate_name(name: &str, allow_empty: bool) -> Result<(), ContentError> {
    let bad = |reason| {
        Err(ContentError::InvalidName {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return if allow_empty { Ok(()) } else { bad("empty") };
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("is . or ..");
    }
    if name.contains(['/', '\0']) {
        return bad("contains / or NUL");
    }
    Ok(())
}

fn tree_links<T>(tree: &Tree<T>, leaf: impl Fn(&T) -> Link, out: &mut Vec<Link>) {
    match tree {
        Tree::Leaves(v) => out.extend(v.iter().map(leaf)),
        Tree::Pages(p) => out.extend(p.iter().map(|p| Link {
            kind: LinkKind::Manifest,
            address: p.address,
        })),
    }
}

fn chunk_link(c: &ChunkRef) -> Link {
    Link {
        kind: LinkKind::Chunk,
        address: c.address,
    }
}

fn entry_link(e: &DirEntry) -> Link {
    Link {
        kind: LinkKind::Manifest,
        address: e.address,
    }
}

impl Manifest {
    /// The blocks this manifest names, in order: exactly what its public header lists.
    pub fn links(&self) -> Vec<Link> {
        let mut out = Vec::new();
        match self {
            Manifest::File(f) => tree_links(&f.chunks, chunk_link, &mut out),
            Manifest::ChunkPage(t) => tree_links(t, chunk_link, &mut out),
            Manifest::Dir(d) => tree_links(&d.entries, entry_link, &mut out),
            Manifest::EntryPage(t) => tree_links(t, entry_link, &mut out),
            Manifest::Link(_) => {}
        }
        out
    }

    /// Seals the manifest: returns its block, address and key.
    pub fn seal(
        &self,
        secret: &ConvergenceSecret,
    ) -> Result<(BlockAddress, BlockKey, Vec<u8>), ContentError> {
        let links = self.links();
        if links.len() > MAX_LINKS {
            return Err(ContentError::ManifestTooLarge {
                size: links.len(),
                limit: MAX_LINKS,
            });
        }
        let mut body = Vec::new();
        ciborium::into_writer(
            &Body {
                v: FORMAT_VERSION,
                m: self.clone(),
            },
            &mut body,
        )
        .map_err(|e| ContentError::Encode(e.to_string()))?;
        let mut block = Vec::with_capacity(HEADER_FIXED + links.len() * LINK_LEN + body.len() + 16);
        block.extend_from_slice(&MANIFEST_MAGIC);
        block.extend_from_slice(&(links.len() as u32).to_be_bytes());
        for l in &links {
            block.push(match l.kind {
                LinkKind::Chunk => 0,
                LinkKind::Manifest => 1,
            });
            block.extend_from_slice(l.address.digest());
        }
        let header_len = block.len();
        let key = secret.derive_key(&block[..header_len], &body);
        key.seal_in_place(&mut body, &block[..header_len]);
        block.extend_from_slice(&body);
        if block.len() > MAX_MANIFEST_BLOCK {
            return Err(ContentError::ManifestTooLarge {
                size: block.len(),
                limit: MAX_MANIFEST_BLOCK,
            });
        }
        Ok((BlockAddress::of(&block), key, block))
    }

    /// Opens a manifest block with its key, checking its header, body and limits.
    /// The caller has already checked that `block` hashes to `address`.
    pub fn open(address: BlockAddress, key: &BlockKey, block: &[u8]) -> Result<Self, ContentError> {
        let (links, header_len) = parse_header(address, block)?;
        let mut body = block[header_len..].to_vec();
        key.open_in_place(&mut body, &block[..header_len])
            .map_err(|_| ContentError::Decrypt { address })?;
        let m = Self::decode_body(address, &body)?;
        if m.links() != links {
            return Err(malformed(address, "header links do not match the body"));
        }
        Ok(m)
    }

    /// Decodes and checks a manifest's decrypted body. Separate from [`Manifest::open`] so that
    /// it can be fuzzed without a key (the key's holder may be the one crafting it).
    pub fn decode_body(address: BlockAddress, body: &[u8]) -> Result<Self, ContentError> {
        let decoded: Body = ciborium::from_reader(body)
            .map_err(|e| malformed(address, format!("body does not decode: {e}")))?;
        if decoded.v != FORMAT_VERSION {
            return Err(malformed(
                address,
                format!("unsupported format version {}", decoded.v),
            ));
        }
        let m = decoded.m;
        m.validate(address)?;
        Ok(m)
    }

    fn validate(&self, address: BlockAddress) -> Result<(), ContentError> {
        fn tree<T>(
            address: BlockAddress,
            t: &Tree<T>,
            per_page: usize,
            leaf: impl Fn(&T) -> Result<(), ContentError>,
        ) -> Result<(), ContentError> {
            match t {
                Tree::Leaves(v) if v.len() > per_page => {
                    Err(malformed(address, "too many leaves in one page"))
                }
                Tree::Leaves(v) => v.iter().try_for_each(leaf),
                Tree::Pages(p) if p.len() > MAX_PAGE_REFS || p.is_empty() => {
                    Err(malformed(address, "page list empty or too long"))
                }
                Tree::Pages(_) => Ok(()),
            }
        }
        let chunk = |c: &ChunkRef| {
            if c.len == 0 || c.len as usize > CHUNK_MAX {
                Err(malformed(
                    address,
                    format!("chunk length {} out of range", c.len),
                ))
            } else {
                Ok(())
            }
        };
        let entry = |e: &DirEntry| validate_name(&e.name, false);
        match self {
            Manifest::File(f) => {
                validate_name(&f.name, true)?;
                tree(address, &f.chunks, MAX_CHUNKS_PER_PAGE, chunk)
            }
            Manifest::ChunkPage(t) => tree(address, t, MAX_CHUNKS_PER_PAGE, chunk),
            Manifest::Dir(d) => {
                validate_name(&d.name, true)?;
                tree(address, &d.entries, MAX_ENTRIES_PER_PAGE, entry)
            }
            Manifest::EntryPage(t) => tree(address, t, MAX_ENTRIES_PER_PAGE, entry),
            Manifest::Link(l) => {
                validate_name(&l.name, false)?;
                validate_link_target(&l.target)
                    .map_err(|reason| malformed(address, format!("link target {reason}")))
            }
        }
    }
}

/// Whether `block` starts like a manifest block.
pub fn is_manifest_block(block: &[u8]) -> bool {
    block.len() >= HEADER_FIXED && block[..4] == MANIFEST_MAGIC
}

/// Reads the public link list of a manifest block, without its key. This is all a node that
/// holds the block for someone else can learn from it.
pub fn parse_links(address: BlockAddress, block: &[u8]) -> Result<Vec<Link>, ContentError> {
    parse_header(address, block).map(|(l, _)| l)
}

fn parse_header(address: BlockAddress, block: &[u8]) -> Result<(Vec<Link>, usize), ContentError> {
    if block.len() > MAX_MANIFEST_BLOCK {
        return Err(ContentError::ManifestTooLarge {
            size: block.len(),
            limit: MAX_MANIFEST_BLOCK,
        });
    }
    if !is_manifest_block(block) {
        return Err(malformed(address, "not a manifest block (bad magic)"));
    }
    let count = u32::from_be_bytes([block[4], block[5], block[6], block[7]]) as usize;
    if count > MAX_LINKS {
        return Err(malformed(
            address,
            format!("{count} links exceed {MAX_LINKS}"),
        ));
    }
    let header_len = HEADER_FIXED + count * LINK_LEN;
    if block.len() < header_len + TAG_LEN {
        return Err(malformed(address, "truncated"));
    }
    let mut links = Vec::with_capacity(count);
    for raw in block[HEADER_FIXED..header_len].chunks_exact(LINK_LEN) {
        let kind = match raw[0] {
            0 => LinkKind::Chunk,
            1 => LinkKind::Manifest,
            k => return Err(malformed(address, format!("unknown link kind {k}"))),
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&raw[1..]);
        links.push(Link {
            kind,
            address: BlockAddress::from_digest(digest),
        });
    }
    Ok((links, header_len))
}

/// Seals and stores one page manifest, returning its address and key.
pub type PutPage<'a, E> = dyn FnMut(&Manifest) -> Result<(BlockAddress, BlockKey), E> + 'a;

/// Builds the tree for `leaves`, sealing and storing pages through `put` when the list is
/// longer than `per_page`. `wrap` makes a page manifest from a subtree; `weight` gives the
/// plaintext bytes a leaf covers.
pub fn build_tree<T: Clone, E>(
    leaves: Vec<T>,
    per_page: usize,
    wrap: fn(Tree<T>) -> Manifest,
    weight: impl Fn(&T) -> u64,
    put: &mut PutPage<'_, E>,
) -> Result<Tree<T>, E> {
    if leaves.len() <= per_page {
        return Ok(Tree::Leaves(leaves));
    }
    let mut refs = Vec::with_capacity(leaves.len().div_ceil(per_page));
    for group in leaves.chunks(per_page) {
        let page = wrap(Tree::Leaves(group.to_vec()));
        let (address, key) = put(&page)?;
        refs.push(PageRef {
            address,
            key,
            bytes: group.iter().map(&weight).sum(),
            leaves: group.len() as u64,
        });
    }
    while refs.len() > MAX_PAGE_REFS {
        let mut upper = Vec::with_capacity(refs.len().div_ceil(MAX_PAGE_REFS));
        for group in refs.chunks(MAX_PAGE_REFS) {
            let page = wrap(Tree::Pages(group.to_vec()));
            let (address, key) = put(&page)?;
            upper.push(PageRef {
                address,
                key,
                bytes: group.iter().map(|r| r.bytes).sum(),
                leaves: group.iter().map(|r| r.leaves).sum(),
            });
        }
        refs = upper;
    }
    Ok(Tree::Pages(refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let secret = ConvergenceSecret::from_bytes([1; 32]);
        Manifest::File(FileManifest {
            name: "notes.txt".into(),
            size: 3,
            mode: Some(0o644),
            mtime: Some(1_700_000_000),
            chunks: Tree::Leaves(vec![ChunkRef {
                address: BlockAddress::of(b"x"),
                len: 3,
                key: secret.derive_key(b"", b"abc"),
            }]),
        })
    }

    #[test]
    fn seal_open_round_trip_and_keyless_links() {
        let secret = ConvergenceSecret::from_bytes([1; 32]);
        let m = sample();
        let (addr, key, block) = m.seal(&secret).unwrap();
        assert_eq!(Manifest::open(addr, &key, &block).unwrap(), m);
        assert_eq!(parse_links(addr, &block).unwrap(), m.links());
        let wrong = secret.derive_key(b"", b"nope");
        assert!(matches!(
            Manifest::open(addr, &wrong, &block),
            Err(ContentError::Decrypt { .. })
        ));
    }

    #[test]
    fn tampered_header_is_rejected() {
        let secret = ConvergenceSecret::from_bytes([1; 32]);
        let (addr, key, mut block) = sample().seal(&secret).unwrap();
        block[9] ^= 0xff;
        assert!(Manifest::open(addr, &key, &block).is_err());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["..", ".", "a/b", "a\0", &"x".repeat(256)] {
            assert!(validate_name(bad, false).is_err(), "{bad:?}");
        }
        assert!(validate_name("", false).is_err());
        assert!(validate_name("", true).is_ok());
        assert!(validate_name("lecture 1.pdf", false).is_ok());
    }

    #[test]
    fn long_lists_become_page_trees() {
        let secret = ConvergenceSecret::from_bytes([1; 32]);
        let leaves: Vec<ChunkRef> = (0..(MAX_CHUNKS_PER_PAGE * 2 + 5))
            .map(|i| ChunkRef {
                address: BlockAddress::of(&i.to_be_bytes()),
                len: 1,
                key: secret.derive_key(b"", &i.to_be_bytes()),
            })
            .collect();
        let mut pages = vec![];
        let tree = build_tree(
            leaves.clone(),
            MAX_CHUNKS_PER_PAGE,
            Manifest::ChunkPage,
            |c| c.len as u64,
            &mut |m| -> Result<_, ContentError> {
                let (a, k, b) = m.seal(&secret)?;
                pages.push(b);
                Ok((a, k))
            },
        )
        .unwrap();
        assert_eq!(pages.len(), 3);
        match tree {
            Tree::Pages(p) => {
                assert_eq!(p.iter().map(|r| r.leaves).sum::<u64>(), leaves.len() as u64)
            }
            Tree::Leaves(_) => panic!("expected pages"),
        }
        assert!(pages.iter().all(|p| p.len() < MAX_MANIFEST_BLOCK));
    }
}
