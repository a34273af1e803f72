//! Looking into an item without reading all of it: its head (name, kind, size), a folder's
//! entries, a path inside a folder, and a byte range of a file.
//!
//! What the gateway and `Range` requests need. Every block is authenticated as in [`read`]
//! (super::read); a range reads only the chunks (and chunk pages) that overlap it, so a
//! request for the last megabyte of a large file costs about a megabyte of reading.

use std::io::Write;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::content::manifest::MAX_TREE_DEPTH;
use crate::content::{
    BlockAddress, ChunkRef, ContentError, ContentId, EntryKind, FileManifest, Manifest, Tree,
    MAX_BLOCK_SIZE,
};
use crate::store::Store;

use super::read::{for_each_entry, load_manifest};
use super::{FilesError, Result};

/// What an item is, from its root manifest alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Head {
    pub name: String,
    /// `file` or `dir`.
    pub kind: String,
    pub size: u64,
    /// Seconds since the Unix epoch, when it was recorded.
    pub mtime: Option<i64>,
}

/// One entry of a folder, with the ID that reads it on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FolderEntry)]
pub struct Entry {
    pub name: String,
    /// `file`, `dir` or `link`.
    pub kind: String,
    pub size: u64,
    pub id: String,
    /// Where a symbolic link points (as it was added; never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn malformed(address: BlockAddress, reason: &str) -> FilesError {
    FilesError::Content(ContentError::MalformedManifest {
        address,
        reason: reason.into(),
    })
}

/// The head of the item `id`.
pub fn head(store: &Store, id: &ContentId) -> Result<Head> {
    match super::read::load_root(store, id)? {
        Manifest::File(f) => Ok(Head {
            name: f.name,
            kind: "file".into(),
            size: f.size,
            mtime: f.mtime,
        }),
        Manifest::Dir(d) => Ok(Head {
            name: d.name,
            kind: "dir".into(),
            size: d.size,
            mtime: d.mtime,
        }),
        Manifest::Link(l) => Ok(Head {
            name: l.name,
            kind: "link".into(),
            size: 0,
            mtime: l.mtime,
        }),
        _ => Err(malformed(id.root, "expected a file or folder")),
    }
}

/// The entries of the folder `id`, in name order.
pub fn entries(store: &Store, id: &ContentId) -> Result<Vec<Entry>> {
    let Manifest::Dir(d) = super::read::load_root(store, id)? else {
        return Err(FilesError::NotAFolder { id: id.to_string() });
    };
    let mut out = Vec::new();
    for_each_entry(store, &d.entries, 0, &mut |e| {
        let target = match e.kind {
            EntryKind::Link => match load_manifest(store, e.address, &e.key)? {
                Manifest::Link(l) => Some(l.target),
                _ => return Err(malformed(e.address, "expected a link")),
            },
            _ => None,
        };
        out.push(Entry {
            name: e.name.clone(),
            kind: e.kind.as_str().into(),
            size: e.size,
            id: ContentId::new(e.address, e.key).to_string(),
            target,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The item at `path` (names separated by `/`) inside the folder `id`; `id` itself for an
/// empty path.
pub fn resolve(store: &Store, id: &ContentId, path: &str) -> Result<ContentId> {
    let mut at = *id;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        let Manifest::Dir(d) = load_manifest(store, at.root, &at.key)? else {
            return Err(FilesError::NoSuchPath {
                id: id.to_string(),
                path: path.to_owned(),
            });
        };
        let mut found = None;
        for_each_entry(store, &d.entries, 0, &mut |e| {
            if found.is_none() && e.name == name {
                found = Some(ContentId::new(e.address, e.key));
            }
            Ok(())
        })?;
        at = found.ok_or_else(|| FilesError::NoSuchPath {
            id: id.to_string(),
            path: path.to_owned(),
        })?;
    }
    Ok(at)
}

/// Writes bytes `range` of the file `id` to `out`; returns the bytes written. The range must
/// lie within the file.
pub fn cat_range(
    store: &Store,
    id: &ContentId,
    range: Range<u64>,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut written = 0u64;
    range_walk(store, id, range, &mut |c, part| {
        let bytes = read_part(store, c, part)?;
        out.write_all(&bytes).map_err(FilesError::Output)?;
        written += bytes.len() as u64;
        Ok(())
    })?;
    out.flush().map_err(FilesError::Output)?;
    Ok(written)
}

/// A piece of a file's range: a chunk and the part of its plaintext that lies in the range.
pub type RangePart = (ChunkRef, Range<usize>);

/// The chunks that hold bytes `range` of the file `id` (`None`: all of it), in order, with the
/// part of each that lies in the range. Reads only manifests: a reader that streams the file
/// reads one piece at a time with [`read_part`] and holds no thread in between.
pub fn range_plan(
    store: &Store,
    id: &ContentId,
    range: Option<Range<u64>>,
) -> Result<Vec<RangePart>> {
    let range = match range {
        Some(r) => r,
        None => 0..head(store, id)?.size,
    };
    let mut plan = Vec::new();
    range_walk(store, id, range, &mut |c, part| {
        plan.push((*c, part));
        Ok(())
    })?;
    Ok(plan)
}

/// Reads and opens the chunk `c` and returns its plaintext bytes `part`.
pub fn read_part(store: &Store, c: &ChunkRef, part: Range<usize>) -> Result<bytes::Bytes> {
    let sealed = store.read_block(&c.address, MAX_BLOCK_SIZE)?;
    let plain = super::read::open_one(store, c, Ok(sealed))?;
    if part.start > part.end || part.end > plain.len() {
        return Err(FilesError::Corrupt {
            what: format!("chunk {}", c.address),
            reason: "shorter than its manifest says".into(),
        });
    }
    Ok(plain.slice(part))
}

/// Calls `visit` for every chunk of the file `id` that holds bytes of `range`, in order.
fn range_walk(
    store: &Store,
    id: &ContentId,
    range: Range<u64>,
    visit: &mut dyn FnMut(&ChunkRef, Range<usize>) -> Result<()>,
) -> Result<()> {
    let Manifest::File(f) = super::read::load_root(store, id)? else {
        return Err(FilesError::IsFolder { id: id.to_string() });
    };
    if range.start > range.end || range.end > f.size {
        return Err(FilesError::Corrupt {
            what: format!("file {:?}", f.name),
            reason: format!(
                "range {}..{} lies outside its {} bytes",
                range.start, range.end, f.size
            ),
        });
    }
    let mut walk = RangeWalk {
        store,
        file: &f,
        range,
        pos: 0,
        visit,
    };
    walk.tree(&f.chunks, 0)?;
    Ok(())
}

struct RangeWalk<'a> {
    store: &'a Store,
    file: &'a FileManifest,
    range: Range<u64>,
    /// File offset of the next chunk walked (skipped or read).
    pos: u64,
    visit: &'a mut dyn FnMut(&ChunkRef, Range<usize>) -> Result<()>,
}

impl RangeWalk<'_> {
    /// Walks `tree`, skipping pages and chunks before the range; false once past it.
    fn tree(&mut self, tree: &Tree<ChunkRef>, depth: usize) -> Result<bool> {
        match tree {
            Tree::Leaves(v) => {
                for c in v {
                    if !self.chunk(c)? {
                        return Ok(false);
                    }
                }
            }
            Tree::Pages(pages) => {
                for p in pages {
                    if self.pos >= self.range.end {
                        return Ok(false);
                    }
                    if self.pos.saturating_add(p.bytes) <= self.range.start {
                        self.pos = self.pos.saturating_add(p.bytes);
                        continue;
                    }
                    if depth >= MAX_TREE_DEPTH {
                        return Err(malformed(p.address, "page tree deeper than allowed"));
                    }
                    let Manifest::ChunkPage(t) = load_manifest(self.store, p.address, &p.key)?
                    else {
                        return Err(malformed(p.address, "expected a chunk page"));
                    };
                    if !self.tree(&t, depth + 1)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    fn chunk(&mut self, c: &ChunkRef) -> Result<bool> {
        let (start, end) = (self.pos, self.pos.saturating_add(u64::from(c.len)));
        self.pos = end;
        if start >= self.range.end {
            return Ok(false);
        }
        if end <= self.range.start {
            return Ok(true);
        }
        if end > self.file.size {
            return Err(FilesError::Corrupt {
                what: format!("file {:?}", self.file.name),
                reason: format!(
                    "its chunks hold more than the {} bytes it declares",
                    self.file.size
                ),
            });
        }
        let from = (self.range.start.max(start) - start) as usize;
        let to = (self.range.end.min(end) - start) as usize;
        if from < to {
            (self.visit)(c, from..to)?;
        }
        Ok(end < self.range.end)
    }
}
