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

/// The root manifest of the item `id` names; an item whose root is not here is named by the
/// ID the user gave (not by the root's block address, which they never saw).
pub fn load_root(store: &Store, id: &ContentId) -> Result<Manifest> {
    load_manifest(store, id.root, &id.key).map_err(|e| match e {
        FilesError::Store(StoreError::Missing { address }) if address == id.root => {
            FilesError::NotHeld { id: id.short() }
        }
        e => e,
    })
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

/// Where `cat` and `get` take sealed chunks from: the store, or a fetch that is still
/// bringing them (which waits for each chunk to arrive). Manifests always come from the store.
pub trait ChunkSource: Sync {
    /// The sealed bytes of a chunk (authenticated by the reader when it opens them).
    fn sealed_chunk(&self, address: &BlockAddress) -> Result<Vec<u8>>;
}

impl ChunkSource for Store {
    fn sealed_chunk(&self, address: &BlockAddress) -> Result<Vec<u8>> {
        Ok(self.read_block(address, MAX_BLOCK_SIZE)?)
    }
}

/// Where an item read from the store goes.
pub enum Output {
    /// A new file or folder tree at this path (as `get` writes it).
    Path(PathBuf),
    /// A file item's bytes, as `cat` writes them.
    Stream(Box<dyn Write + Send>),
}

/// Writes the item `id` to `output`, taking chunks from `source`.
pub fn write_output(
    store: &Store,
    source: &dyn ChunkSource,
    id: &ContentId,
    output: Output,
    progress: Progress<'_>,
) -> Result<()> {
    match output {
        Output::Path(p) => get_from(store, source, id, &p, progress),
        Output::Stream(mut w) => cat_from(store, source, id, &mut w, progress).map(|_| ()),
    }
}

/// Writes the decrypted bytes of a file item to `out`; returns the bytes written.
pub fn cat(
    store: &Store,
    id: &ContentId,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    cat_from(store, store, id, out, progress)
}

/// [`cat`] with chunks from `source`.
pub fn cat_from(
    store: &Store,
    source: &dyn ChunkSource,
    id: &ContentId,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    match load_root(store, id)? {
        Manifest::File(f) => write_file(store, source, &f, out, progress),
        Manifest::Dir(_) => Err(FilesError::IsFolder { id: id.to_string() }),
        _ => Err(wrong_kind(id.root, "a file or folder")),
    }
}

type Job = (usize, ChunkRef, Result<Vec<u8>>);
type Opened = (usize, Result<bytes::Bytes>);

/// Writes a file's chunks in order. A file of one chunk (every file shorter than the smallest
/// chunk) is read and opened right here: starting the pipeline's threads would cost more than
/// the file. Longer files stream through [`write_chunks`].
fn write_file(
    store: &Store,
    source: &dyn ChunkSource,
    file: &FileManifest,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    let what = || {
        if file.name.is_empty() {
            "file".to_string()
        } else {
            format!("file {:?}", file.name)
        }
    };
    let written = match &file.chunks {
        Tree::Leaves(v) if v.len() <= 1 => {
            let mut n = 0u64;
            for c in v {
                let plain = open_one(store, c, source.sealed_chunk(&c.address))?;
                within_size(file, n, plain.len())?;
                out.write_all(&plain).map_err(FilesError::Output)?;
                n += plain.len() as u64;
                progress(n);
            }
            out.flush().map_err(FilesError::Output)?;
            n
        }
        _ => write_chunks(store, source, file, out, progress)?,
    };
    if written != file.size {
        return Err(FilesError::Corrupt {
            what: what(),
            reason: format!("{written} bytes read, manifest says {}", file.size),
        });
    }
    Ok(written)
}

/// Refuses to write beyond the size the file's manifest declares: a crafted manifest whose
/// chunks add up to more would otherwise be written out in full before the final check.
fn within_size(file: &FileManifest, written: u64, next: usize) -> Result<()> {
    if written.saturating_add(next as u64) > file.size {
        return Err(FilesError::Corrupt {
            what: format!("file {:?}", file.name),
            reason: format!(
                "its chunks hold more than the {} bytes it declares",
                file.size
            ),
        });
    }
    Ok(())
}

/// Streams a file's chunks: a reading thread, opening workers, and in-order writing here.
fn write_chunks(
    store: &Store,
    source: &dyn ChunkSource,
    file: &FileManifest,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64> {
    let workers = worker_count();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Opened>(workers * 2);
    // Held by the workers only: when the last one stops (its output closed on an error), the
    // receivers are gone and the producing thread's next send fails instead of blocking.
    std::thread::scope(|s| -> Result<u64> {
        s.spawn(move || {
            let mut i = 0;
            let walked = for_each_chunk(store, &file.chunks, 0, &mut |c| {
                let bytes = source.sealed_chunk(&c.address);
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
            let (done_tx, job_rx) = (done_tx.clone(), job_rx.clone());
            s.spawn(move || open_worker(store, job_rx, done_tx));
        }
        drop(done_tx);
        drop(job_rx);
        let mut next = 0usize;
        let mut waiting: BTreeMap<usize, Result<bytes::Bytes>> = BTreeMap::new();
        let mut written = 0u64;
        let result = (|| -> Result<()> {
            for (i, r) in done_rx.iter() {
                waiting.insert(i, r);
                while let Some(r) = waiting.remove(&next) {
                    let plain = r?;
                    within_size(file, written, plain.len())?;
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

/// Opens one sealed chunk read for `c`, naming it in the error.
pub(super) fn open_one(
    store: &Store,
    c: &ChunkRef,
    sealed: Result<Vec<u8>>,
) -> Result<bytes::Bytes> {
    crate::content::open_chunk(c, sealed?).map_err(|e| match e {
        crate::content::ChunkError::Decrypt => StoreError::Corrupt {
            address: c.address,
            path: store.dir().join("blocks"),
            reason: "chunk failed to authenticate (altered or truncated; run `storgo verify`)"
                .into(),
        }
        .into(),
        other => FilesError::Corrupt {
            what: format!("chunk {}", c.address),
            reason: other.to_string(),
        },
    })
}

fn open_worker(
    store: &Store,
    jobs: crossbeam_channel::Receiver<Job>,
    done: crossbeam_channel::Sender<Opened>,
) {
    for (i, c, bytes) in jobs {
        let r = open_one(store, &c, bytes);
        if done.send((i, r)).is_err() {
            return;
        }
    }
}

/// Writes an item to `dest` (a file, or a folder tree), restoring modes and mtimes. Nothing
/// appears at `dest` unless the whole item was read and checked.
pub fn get(store: &Store, id: &ContentId, dest: &Path, progress: Progress<'_>) -> Result<()> {
    get_from(store, store, id, dest, progress)
}

/// [`get`] with chunks from `source`.
pub fn get_from(
    store: &Store,
    source: &dyn ChunkSource,
    id: &ContentId,
    dest: &Path,
    progress: Progress<'_>,
) -> Result<()> {
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
    // A private folder with an unpredictable name beside the destination (same filesystem,
    // so the final rename is atomic); nobody else can put a symlink where we write.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{base}.storgo-"))
        .tempdir_in(&parent)
        .map_err(|e| FilesError::io("creating a temporary folder in", &parent, e))?;
    let tmp = staging.path().join("item");
    let mut done = 0u64;
    // A folder may name the same subtree many times; hold the output to the size the root
    // declares (what `stat` showed the user) so a crafted item cannot fill the disk.
    let limit = match load_root(store, id)? {
        Manifest::File(f) => f.size,
        Manifest::Dir(d) => d.size,
        _ => return Err(wrong_kind(id.root, "a file or folder")),
    };
    let mut budget = Budget {
        done: &mut done,
        limit,
        depth: 0,
    };
    write_item(store, source, id.root, &id.key, &tmp, &mut budget, progress)?;
    sync_filesystem(&tmp)?;
    // Never over something that appeared at the destination meanwhile (a file, a folder, a
    // symlink): the staging folder and what is in it go when `staging` drops.
    rename_new(&tmp, dest)
}

/// Renames `from` to `to`, failing if `to` exists (renameat2 with RENAME_NOREPLACE).
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let e = match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if e == Errno::EXIST {
        return Err(FilesError::Exists {
            path: to.to_owned(),
        });
    }
    // NFS, many FUSE filesystems and some older kernels answer EINVAL (or ENOSYS, EOPNOTSUPP)
    // to RENAME_NOREPLACE: the finished download must not be thrown away there.
    if [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP].contains(&e) {
        tracing::debug!(path = %to.display(), error = %e, "renameat2(RENAME_NOREPLACE) unsupported here: reserving the name first");
        return rename_new_by_reserving(from, to);
    }
    Err(FilesError::io("renaming into", to, e.into()))
}

/// [`rename_new`] where RENAME_NOREPLACE is not supported: the name is taken first with an
/// exclusive create of the same kind (`O_EXCL` for a file, `mkdir` for a folder — both fail if
/// anything, a link included, is there), then a plain rename replaces that placeholder, which
/// POSIX makes atomic for a file and for an empty folder. Nothing that existed at `to` is ever
/// replaced; a placeholder left by a failure is removed.
fn rename_new_by_reserving(from: &Path, to: &Path) -> Result<()> {
    let is_dir = fs::symlink_metadata(from)
        .map_err(|e| FilesError::io("reading", from, e))?
        .is_dir();
    let reserved = if is_dir {
        fs::create_dir(to)
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map(drop)
    };
    if let Err(e) = reserved {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(FilesError::Exists {
                path: to.to_owned(),
            });
        }
        return Err(FilesError::io("creating", to, e));
    }
    fs::rename(from, to).map_err(|e| {
        let _ = if is_dir {
            fs::remove_dir(to)
        } else {
            fs::remove_file(to)
        };
        FilesError::io("renaming into", to, e)
    })
}

/// Makes everything written on `path`'s filesystem durable (one `syncfs` for a whole tree):
/// the output appears at its destination only once every byte of it is on disk.
fn sync_filesystem(path: &Path) -> Result<()> {
    // The folder it was written in (the output itself may be a file the user cannot read).
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let f = fs::File::open(dir)
        .or_else(|_| fs::File::open(path))
        .map_err(|e| FilesError::io("opening", dir, e))?;
    if let Err(e) = rustix::fs::syncfs(&f) {
        return Err(FilesError::io("syncing", path, e.into()));
    }
    Ok(())
}

fn mtime_of(t: i64) -> std::time::SystemTime {
    if t >= 0 {
        UNIX_EPOCH + Duration::from_secs(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.unsigned_abs())
    }
}

/// A folder's mtime (after its contents are written, which change it). Folders keep the
/// owner's rwx while being written, so opening one works whatever its recorded mode.
fn set_dir_times(path: &Path, mtime: Option<i64>) -> Result<()> {
    if let Some(t) = mtime {
        let f = fs::File::open(path).map_err(|e| FilesError::io("opening", path, e))?;
        f.set_modified(mtime_of(t))
            .map_err(|e| FilesError::io("setting mtime of", path, e))?;
    }
    Ok(())
}

/// Permission bits `get` restores: read, write and execute only. setuid, setgid and sticky
/// are never restored — a file someone else added must not become a setuid program here.
const RESTORED_MODE: u32 = 0o777;

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
    source: &dyn ChunkSource,
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
            // create_new: never through something already there. A crafted folder may name a
            // link and a file alike; the link is restored first, and opening the file must
            // not write where the link points.
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| FilesError::io("creating", path, e))?;
            let base = *done;
            let n = write_file(store, source, &f, &mut out, &|b| progress(base + b))?;
            *done += n;
            // Times and mode through the open handle: reopening a file whose recorded mode
            // is write-only (0200) would fail. Made durable all at once before the rename
            // (`get_from`), not file by file.
            if let Some(t) = f.mtime {
                out.set_modified(mtime_of(t))
                    .map_err(|e| FilesError::io("setting mtime of", path, e))?;
            }
            if let Some(mode) = f.mode {
                out.set_permissions(fs::Permissions::from_mode(mode & RESTORED_MODE))
                    .map_err(|e| FilesError::io("setting mode of", path, e))?;
            }
            Ok(())
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
                    source,
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
                fs::set_permissions(
                    path,
                    fs::Permissions::from_mode((mode & RESTORED_MODE) | 0o700),
                )
                .map_err(|e| FilesError::io("setting mode of", path, e))?;
            }
            set_dir_times(path, d.mtime)
        }
        // Restored as a link, as it was; nothing is ever written through it (names in a
        // folder are unique, so no later entry lands under it).
        Manifest::Link(l) if budget.depth > 0 => std::os::unix::fs::symlink(&l.target, path)
            .map_err(|e| FilesError::io("creating the link", path, e)),
        _ => Err(wrong_kind(address, "a file or folder")),
    }
}

/// What `storgo stat` prints.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    let root = load_root(store, id)?;
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
                    (Manifest::File(_), EntryKind::File)
                        | (Manifest::Dir(_), EntryKind::Dir)
                        | (Manifest::Link(_), EntryKind::Link)
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
        for_reading: false,
        replicas: store.pin_of(&id.root)?.and_then(|p| p.replicas),
        internal: false,
        durability: None,
        stripe_map: None,
    };
    session.commit_pin(&rec)?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback taken where RENAME_NOREPLACE is refused (NFS, FUSE), forced here: a file
    /// and a folder land whole; an existing file, folder or link at the destination is never
    /// replaced, and the error names it.
    #[test]
    fn renaming_by_reserving_the_name_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, dir) = (tmp.path().join("f.tmp"), tmp.path().join("d.tmp"));
        fs::write(&file, b"lecture").unwrap();
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("inside"), b"x").unwrap();

        let to = tmp.path().join("f");
        rename_new_by_reserving(&file, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"lecture");
        assert!(!file.exists());
        let dto = tmp.path().join("d");
        rename_new_by_reserving(&dir, &dto).unwrap();
        assert_eq!(fs::read(dto.join("inside")).unwrap(), b"x");

        // Something already there: a file, a folder, a link (even a dangling one).
        let src = tmp.path().join("again.tmp");
        fs::write(&src, b"new").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
        for existing in [&to, &dto, &link] {
            let e = rename_new_by_reserving(&src, existing).unwrap_err();
            assert!(matches!(e, FilesError::Exists { .. }), "{e}");
        }
        assert_eq!(fs::read(&to).unwrap(), b"lecture");
        assert!(
            !tmp.path().join("nowhere").exists(),
            "written through a link"
        );
        assert_eq!(
            fs::read(&src).unwrap(),
            b"new",
            "the source is kept on failure"
        );
    }
}
