//! Reading items back: `cat`, `get` and `stat`.
//!
//! Every chunk is authenticated by its key (taken from a manifest that was itself
//! authenticated by the content ID's key) and its length checked against the manifest, so
//! the bytes that reach the user are the bytes that were added, in order, or the read fails
//! with an error naming the block. The whole-file SHA-256 in the manifest is not recomputed
//! here: it would add a second full pass for no extra assurance (DESIGN.md, "Reading").

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::content::manifest::{MAX_MANIFEST_BLOCK, MAX_TREE_DEPTH};
use crate::content::{
    BlockAddress, BlockKey, ChunkRef, ContentError, ContentId, DirEntry, EntryKind, FileManifest,
    Manifest, Tree, MAX_BLOCK_SIZE,
};
use crate::store::{Store, StoreError};

use super::add::Progress;
use super::{worker_count, FilesError, Result};

/// Reads, checks and opens one manifest block.
pub fn load_manifest(store: &Store, address: BlockAddress, key: &BlockKey) -> Result<Manifest> {
    let block = store.read_verified(&address, MAX_MANIFEST_BLOCK)?;
    Ok(Manifest::open(address, key, &block)?)
}

fn too_deep(address: BlockAddress) -> FilesError {
    FilesError::Content(ContentError::MalformedManifest {
        address,
        reason: "page tree deeper than allowed".into(),
    })
}

/// Visits the leaves of a chunk tree in order, loading pages from the store.
pub fn for_each_chunk(
    store: &Store,
    tree: &Tree<ChunkRef>,
    depth: usize,
    f: &mut dyn FnMut(&ChunkRef) -> Result<()>,
) -> Result<()> {
    match tree {
        Tree::Leaves(v) => v.iter().try_for_each(f),
        Tree::Pages(pages) => {
            for p in pages {
                if depth >= MAX_TREE_DEPTH {
                    return Err(too_deep(p.address));
                }
                match load_manifest(store, p.address, &p.key)? {
                    Manifest::ChunkPage(t) => for_each_chunk(store, &t, depth + 1, f)?,
                    _ => return Err(wrong_kind(p.address, "a chunk page")),
                }
            }
            Ok(())
        }
    }
}

/// Visits the entries of a folder in order, loading pages from the store.
pub fn for_each_entry(
    store: &Store,
    tree: &Tree<DirEntry>,
    depth: usize,
    f: &mut dyn FnMut(&DirEntry) -> Result<()>,
) -> Result<()> {
    match tree {
        Tree::Leaves(v) => v.iter().try_for_each(f),
        Tree::Pages(pages) => {
            for p in pages {
                if depth >= MAX_TREE_DEPTH {
                    return Err(too_deep(p.address));
                }
                match load_manifest(store, p.address, &p.key)? {
                    Manifest::EntryPage(t) => for_each_entry(store, &t, depth + 1, f)?,
                    _ => return Err(wrong_kind(p.address, "an entry page")),
                }
            }
            Ok(())
        }
    }
}

fn wrong_kind(address: BlockAddress, expected: &str) -> FilesError {
    FilesError::Content(ContentError::MalformedManifest {
        address,
        reason: format!("expected {expected}"),
    })
}

/// Writes the decrypted bytes of a file item to `out`; returns the bytes written.
pub fn cat(
    store: &Store,
    id: &ContentId,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    match load_manifest(store, id.root, &id.key)? {
        Manifest::File(f) => write_file(store, &f, out, progress),
        Manifest::Dir(_) => Err(FilesError::IsFolder { id: id.to_string() }),
        _ => Err(wrong_kind(id.root, "a file or folder")),
    }
}

type Job = (usize, ChunkRef, Result<Vec<u8>>);

/// Streams a file's chunks: a reading thread, opening workers, and in-order writing here.
fn write_file(
    store: &Store,
    file: &FileManifest,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    let workers = worker_count();
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let (done_tx, done_rx) = sync_channel::<(usize, Result<Vec<u8>>)>(workers * 2);
    // Shared by the workers only: when the last one stops (its output closed on an error),
    // the receiver drops and the producing thread's next send fails instead of blocking.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let what = if file.name.is_empty() {
        "file".to_string()
    } else {
        format!("file {:?}", file.name)
    };
    std::thread::scope(|s| -> Result<u64> {
        s.spawn(move || {
            let mut i = 0;
            let walked = for_each_chunk(store, &file.chunks, 0, &mut |c| {
                let bytes = store
                    .read_block(&c.address, MAX_BLOCK_SIZE)
                    .map_err(FilesError::from);
                job_tx
                    .send((i, *c, bytes))
                    .map_err(|_| FilesError::Output(std::io::ErrorKind::BrokenPipe.into()))?;
                i += 1;
                Ok(())
            });
            if let Err(e) = walked {
                let _ = job_tx.send((i, dummy_ref(), Err(e)));
            }
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = Arc::clone(&job_rx);
            s.spawn(move || open_worker(store, &job_rx, done_tx));
        }
        drop(done_tx);
        drop(job_rx);
        let mut next = 0usize;
        let mut waiting: BTreeMap<usize, Result<Vec<u8>>> = BTreeMap::new();
        let mut written = 0u64;
        let result = (|| -> Result<()> {
            for (i, r) in done_rx.iter() {
                waiting.insert(i, r);
                while let Some(r) = waiting.remove(&next) {
                    let plain = r?;
                    out.write_all(&plain).map_err(FilesError::Output)?;
                    written += plain.len() as u64;
                    progress(written);
                    next += 1;
                }
            }
            Ok(())
        })();
        drop(done_rx);
        result?;
        out.flush().map_err(FilesError::Output)?;
        if written != file.size {
            return Err(FilesError::Corrupt {
                what,
                reason: format!("{written} bytes read, manifest says {}", file.size),
            });
        }
        Ok(written)
    })
}

fn dummy_ref() -> ChunkRef {
    ChunkRef {
        address: BlockAddress::from_digest([0; 32]),
        len: 0,
        key: BlockKey::from_bytes([0; 32]),
    }
}

fn open_worker(
    store: &Store,
    jobs: &Mutex<Receiver<Job>>,
    done: SyncSender<(usize, Result<Vec<u8>>)>,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((i, c, bytes)) = job else { return };
        let r = bytes.and_then(|mut b| {
            c.key
                .open_in_place(&mut b, &[])
                .map_err(|_| StoreError::Corrupt {
                    address: c.address,
                    path: store.dir().join("blocks"),
                    reason:
                        "chunk failed to authenticate (altered or truncated; run `storgo verify`)"
                            .into(),
                })?;
            if b.len() != c.len as usize {
                return Err(FilesError::Corrupt {
                    what: format!("chunk {}", c.address),
                    reason: format!("{} bytes, manifest says {}", b.len(), c.len),
                });
            }
            Ok(b)
        });
        if done.send((i, r)).is_err() {
            return;
        }
    }
}

/// Writes an item to `dest` (a file, or a folder tree), restoring modes and mtimes. Nothing
/// appears at `dest` unless the whole item was read and checked.
pub fn get(store: &Store, id: &ContentId, dest: &Path, progress: Progress<'_>) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(FilesError::Exists {
            path: dest.to_owned(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "item".into());
    let tmp = parent.join(format!(".{base}.storgo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_file(&tmp);
    let mut done = 0u64;
    // A folder may name the same subtree many times; hold the output to the size the root
    // declares (what `stat` showed the user) so a crafted item cannot fill the disk.
    let limit = match load_manifest(store, id.root, &id.key)? {
        Manifest::File(f) => f.size,
        Manifest::Dir(d) => d.size,
        _ => return Err(wrong_kind(id.root, "a file or folder")),
    };
    let mut budget = Budget {
        done: &mut done,
        limit,
        depth: 0,
    };
    let r = write_item(store, id.root, &id.key, &tmp, &mut budget, progress);
    match r {
        Ok(()) => fs::rename(&tmp, dest).map_err(|e| FilesError::io("renaming into", dest, e)),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn set_times(path: &Path, mtime: Option<i64>) -> Result<()> {
    if let Some(t) = mtime {
        let when = if t >= 0 {
            UNIX_EPOCH + Duration::from_secs(t as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.unsigned_abs())
        };
        let f = fs::File::open(path).map_err(|e| FilesError::io("opening", path, e))?;
        f.set_modified(when)
            .map_err(|e| FilesError::io("setting mtime of", path, e))?;
    }
    Ok(())
}

/// How much an item being written may still produce.
struct Budget<'a> {
    done: &'a mut u64,
    limit: u64,
    depth: usize,
}

/// Deepest folder nesting `get` writes.
const MAX_DIR_DEPTH: usize = 256;

fn write_item(
    store: &Store,
    address: BlockAddress,
    key: &BlockKey,
    path: &Path,
    budget: &mut Budget<'_>,
    progress: Progress<'_>,
) -> Result<()> {
    match load_manifest(store, address, key)? {
        Manifest::File(f) => {
            if budget.done.saturating_add(f.size) > budget.limit {
                return Err(FilesError::Corrupt {
                    what: format!("item {address}"),
                    reason: "its files add up to more than the size its root declares".into(),
                });
            }
            let done = &mut *budget.done;
            let mut out =
                fs::File::create(path).map_err(|e| FilesError::io("creating", path, e))?;
            let base = *done;
            let n = write_file(store, &f, &mut out, &|b| progress(base + b))?;
            *done += n;
            out.sync_all()
                .map_err(|e| FilesError::io("syncing", path, e))?;
            drop(out);
            if let Some(mode) = f.mode {
                fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| FilesError::io("setting mode of", path, e))?;
            }
            set_times(path, f.mtime)
        }
        Manifest::Dir(d) => {
            if budget.depth >= MAX_DIR_DEPTH {
                return Err(FilesError::Corrupt {
                    what: format!("folder {address}"),
                    reason: format!("nested deeper than {MAX_DIR_DEPTH} levels"),
                });
            }
            fs::create_dir(path).map_err(|e| FilesError::io("creating", path, e))?;
            budget.depth += 1;
            for_each_entry(store, &d.entries, 0, &mut |e| {
                write_item(
                    store,
                    e.address,
                    &e.key,
                    &path.join(&e.name),
                    budget,
                    progress,
                )
            })?;
            budget.depth -= 1;
            if let Some(mode) = d.mode {
                // Keep the owner able to finish writing even if the folder was read-only.
                fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o7777) | 0o700))
                    .map_err(|e| FilesError::io("setting mode of", path, e))?;
            }
            set_times(path, d.mtime)
        }
        _ => Err(wrong_kind(address, "a file or folder")),
    }
}

/// What `storgo stat` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemStat {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub files: u64,
    pub chunks: u64,
    pub chunks_local: u64,
    /// SHA-256 of a file's plaintext, when asked for (`stat --sha256`): computed by reading the
    /// file, not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The SHA-256 of a file item's plaintext (what `sha256sum` prints for the file), read from
/// the store: to compare with a checksum someone published.
pub fn sha256(store: &Store, id: &ContentId) -> Result<[u8; 32]> {
    use sha2::Digest;
    struct Hashing(sha2::Sha256);
    impl Write for Hashing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(sha2::Sha256::new());
    cat(store, id, &mut h, &|_| {})?;
    Ok(h.0.finalize().into())
}

/// Counts an item's files and chunks and how many chunks are held here. Manifests must be
/// held; chunks need not be.
pub fn stat(store: &Store, id: &ContentId) -> Result<ItemStat> {
    let root = load_manifest(store, id.root, &id.key)?;
    let mut st = ItemStat {
        id: id.to_string(),
        name: String::new(),
        kind: "file".into(),
        size: 0,
        files: 0,
        chunks: 0,
        chunks_local: 0,
        sha256: None,
    };
    match &root {
        Manifest::File(f) => {
            st.name = f.name.clone();
            st.size = f.size;
        }
        Manifest::Dir(d) => {
            st.name = d.name.clone();
            st.size = d.size;
            st.kind = "dir".into();
        }
        _ => return Err(wrong_kind(id.root, "a file or folder")),
    }
    count(store, root, &mut st)?;
    Ok(st)
}

fn count(store: &Store, m: Manifest, st: &mut ItemStat) -> Result<()> {
    match m {
        Manifest::File(f) => {
            st.files += 1;
            let mut batch = Vec::new();
            for_each_chunk(store, &f.chunks, 0, &mut |c| {
                batch.push(c.address);
                Ok(())
            })?;
            st.chunks += batch.len() as u64;
            st.chunks_local += store.have_blocks(&batch)?.iter().filter(|h| **h).count() as u64;
        }
        Manifest::Dir(d) => {
            let mut children = Vec::new();
            for_each_entry(store, &d.entries, 0, &mut |e| {
                children.push((e.address, e.key, e.kind));
                Ok(())
            })?;
            for (a, k, kind) in children {
                let child = load_manifest(store, a, &k)?;
                let ok = matches!(
                    (&child, kind),
                    (Manifest::File(_), EntryKind::File) | (Manifest::Dir(_), EntryKind::Dir)
                );
                if !ok {
                    return Err(wrong_kind(a, "the entry's kind"));
                }
                count(store, child, st)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Pins an item whose blocks are all held here.
pub fn pin_complete(store: &Store, id: &ContentId) -> Result<crate::store::PinRecord> {
    // Claim the item first, so that what `stat` counts stays here until the pin is written.
    let session = store.session(crate::store::SessionKind::Pin, &id.to_string())?;
    session.claim_item(&id.root)?;
    let st = stat(store, id)?;
    if st.chunks_local < st.chunks {
        return Err(FilesError::Incomplete {
            id: id.to_string(),
            have: st.chunks_local,
            total: st.chunks,
        });
    }
    let rec = crate::store::PinRecord {
        id: id.to_string(),
        name: st.name,
        kind: st.kind,
        size: st.size,
        pinned_at: std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        partial: false,
        replicas: store.pin_of(&id.root)?.and_then(|p| p.replicas),
    };
    session.commit_pin(&rec)?;
    Ok(rec)
}
