//! `add`: a path or stream becomes sealed blocks, manifests and one content ID.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::content::manifest::{build_tree, MAX_CHUNKS_PER_PAGE, MAX_ENTRIES_PER_PAGE};
use crate::content::{
    validate_name, BlockAddress, BlockKey, ChunkRef, Chunker, ContentId, DirEntry, DirManifest,
    EntryKind, FileManifest, LinkManifest, Manifest, CHUNK_MIN,
};
use crate::store::{BlockWriter, PinRecord, Session, SessionKind, Store};

use super::{worker_count, FilesError, Result};

/// How an add behaves.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Add folders and everything below them.
    pub recursive: bool,
    /// Pin the root (what `storgo add` does); without it the blocks are garbage at the next GC.
    pub pin: bool,
    /// Copies the network keeps of it, recorded with the pin (`None`: the node's default).
    pub replicas: Option<u8>,
    /// How the network keeps it (`add --durability`), recorded with the pin (`None`: the
    /// node's `--durability`).
    pub durability: Option<crate::content::stripe::Durability>,
    /// Compress chunks that shrink (`protocols/block-v2.md`); off stores every chunk raw.
    pub compress: bool,
    /// The pin is storgo's own (a collection's version), not the user's: not listed by `ls`.
    pub internal: bool,
}

impl Default for AddOptions {
    fn default() -> Self {
        Self {
            recursive: false,
            pin: true,
            replicas: None,
            durability: None,
            compress: true,
            internal: false,
        }
    }
}

/// The result of an add.
#[derive(Debug, Clone)]
pub struct Added {
    pub id: ContentId,
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Bytes written that the store did not already hold.
    pub new_bytes: u64,
    /// Entries of a folder left out, for the caller to report (once each).
    pub skipped: Vec<Skipped>,
}

/// An entry of a folder that an add left out, and why; the rest of the folder is added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

impl Skipped {
    fn new(path: &Path, why: impl Into<String>) -> Self {
        tracing::debug!(path = %path.display(), "skipped");
        Self {
            path: path.display().to_string(),
            why: why.into(),
        }
    }
}

/// What a folder entry that is neither a file nor a folder is, in the user's words.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file or folder"
    }
}

/// Called with the number of plaintext bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

struct Ctx<'s, 'p> {
    store: &'s Store,
    writer: BlockWriter<'s>,
    progress: Progress<'p>,
    read_so_far: u64,
    skipped: Vec<Skipped>,
    compress: bool,
}

impl Ctx<'_, '_> {
    fn put_manifest(&mut self, m: &Manifest) -> Result<(BlockAddress, BlockKey)> {
        let (address, key, block) = m.seal(self.store.secret())?;
        self.writer.put(address, &block)?;
        Ok((address, key))
    }
}

fn unix_mtime(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

fn file_name(path: &Path) -> Result<String> {
    let canonical;
    let p = if path.file_name().is_none() {
        canonical = fs::canonicalize(path).map_err(|e| FilesError::io("resolving", path, e))?;
        canonical.as_path()
    } else {
        path
    };
    match p.file_name() {
        None => Ok(String::new()),
        Some(n) => n
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| FilesError::NonUtf8Name { path: p.to_owned() }),
    }
}

/// Adds a file, or with `recursive` a folder, and pins it unless told not to.
pub fn add_path(
    store: &Store,
    path: &Path,
    opts: &AddOptions,
    progress: Progress<'_>,
) -> Result<Added> {
    let meta = fs::metadata(path).map_err(|e| FilesError::io("reading", path, e))?;
    let name = file_name(path)?;
    validate_name(&name, true)?;
    let session = store.session(SessionKind::Add, &path.display().to_string())?;
    let mut ctx = Ctx {
        store,
        writer: session.writer(),
        progress,
        read_so_far: 0,
        skipped: Vec::new(),
        compress: opts.compress,
    };
    let (kind, size, address, key) = if meta.is_dir() {
        if !opts.recursive {
            return Err(FilesError::IsDirectory {
                path: path.to_owned(),
            });
        }
        let (size, address, key) = add_dir(&mut ctx, path, &name, &meta)?;
        (EntryKind::Dir, size, address, key)
    } else if meta.is_file() {
        let f = fs::File::open(path).map_err(|e| FilesError::io("opening", path, e))?;
        let (size, address, key) = add_file(
            &mut ctx,
            f,
            meta.len(),
            &name,
            Some(meta.permissions().mode() & 0o7777),
            unix_mtime(&meta),
            path,
        )?;
        (EntryKind::File, size, address, key)
    } else {
        return Err(FilesError::Unsupported {
            path: path.to_owned(),
        });
    };
    finish(ctx, &session, opts, name, kind, size, address, key)
}

/// Adds a byte stream (stdin) as one file named `name`.
pub fn add_reader(
    store: &Store,
    reader: impl Read + Send,
    name: &str,
    opts: &AddOptions,
    progress: Progress<'_>,
) -> Result<Added> {
    validate_name(name, true)?;
    let session = store.session(SessionKind::Add, name)?;
    let mut ctx = Ctx {
        store,
        writer: session.writer(),
        progress,
        read_so_far: 0,
        skipped: Vec::new(),
        compress: opts.compress,
    };
    let (size, address, key) =
        add_file(&mut ctx, reader, u64::MAX, name, None, None, Path::new("-"))?;
    finish(
        ctx,
        &session,
        opts,
        name.to_owned(),
        EntryKind::File,
        size,
        address,
        key,
    )
}

/// Makes the blocks durable and, when pinning, turns the add's session into the pin (which
/// checks that every block of the item is held).
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: Ctx<'_, '_>,
    session: &Session,
    opts: &AddOptions,
    name: String,
    kind: EntryKind,
    size: u64,
    address: BlockAddress,
    key: BlockKey,
) -> Result<Added> {
    let stats = ctx.writer.finish()?;
    let id = ContentId::new(address, key);
    if opts.pin {
        session.commit_pin(&PinRecord {
            id: id.to_string(),
            name: name.clone(),
            kind: kind.as_str().into(),
            size,
            pinned_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            partial: false,
            for_reading: false,
            replicas: opts.replicas,
            internal: opts.internal,
            durability: opts.durability,
            stripe_map: None,
        })?;
    }
    tracing::info!(cid = %address, bytes = size, new_bytes = stats.new_bytes, "added");
    Ok(Added {
        id,
        name,
        kind,
        size,
        new_bytes: stats.new_bytes,
        skipped: ctx.skipped,
    })
}

fn add_dir(
    ctx: &mut Ctx<'_, '_>,
    path: &Path,
    name: &str,
    meta: &fs::Metadata,
) -> Result<(u64, BlockAddress, BlockKey)> {
    let mut children = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| FilesError::io("listing", path, e))? {
        let entry = entry.map_err(|e| FilesError::io("listing", path, e))?;
        let child = entry.path();
        // Names are text in a manifest (`protocols/manifest-v2.md`): one that is not is
        // left out, and the rest of the folder is added.
        match entry.file_name().into_string() {
            Ok(child_name) => children.push((child_name, child)),
            Err(_) => ctx.skipped.push(Skipped::new(
                &child,
                "its name is not valid UTF-8 (storgo keeps names as text)",
            )),
        }
    }
    children.sort();
    let mut entries = Vec::with_capacity(children.len());
    let mut total = 0u64;
    for (child_name, child) in children {
        let cmeta =
            fs::symlink_metadata(&child).map_err(|e| FilesError::io("reading", &child, e))?;
        let (kind, size, address, key) = if cmeta.is_dir() {
            let (s, a, k) = add_dir(ctx, &child, &child_name, &cmeta)?;
            (EntryKind::Dir, s, a, k)
        } else if cmeta.is_file() {
            let f = fs::File::open(&child).map_err(|e| FilesError::io("opening", &child, e))?;
            let (s, a, k) = add_file(
                ctx,
                f,
                cmeta.len(),
                &child_name,
                Some(cmeta.permissions().mode() & 0o7777),
                unix_mtime(&cmeta),
                &child,
            )?;
            (EntryKind::File, s, a, k)
        } else if cmeta.file_type().is_symlink() {
            match add_link(ctx, &child, &child_name, &cmeta)? {
                Some((a, k)) => (EntryKind::Link, 0, a, k),
                None => continue,
            }
        } else {
            ctx.skipped.push(Skipped::new(&child, kind_of(&cmeta)));
            continue;
        };
        total += size;
        entries.push(DirEntry {
            name: child_name,
            kind,
            size,
            address,
            key,
        });
    }
    let tree = build_tree(
        entries,
        MAX_ENTRIES_PER_PAGE,
        Manifest::EntryPage,
        |e| e.size,
        &mut |m| ctx.put_manifest(m),
    )?;
    let (address, key) = ctx.put_manifest(&Manifest::Dir(DirManifest {
        name: name.to_owned(),
        size: total,
        mode: Some(meta.permissions().mode() & 0o7777),
        mtime: unix_mtime(meta),
        entries: tree,
    }))?;
    Ok((total, address, key))
}

/// Stores a symbolic link as a link entry: its target as text, never followed (what it points
/// to is not added). `None` (and a skip reported) for a target storgo cannot keep.
fn add_link(
    ctx: &mut Ctx<'_, '_>,
    path: &Path,
    name: &str,
    meta: &fs::Metadata,
) -> Result<Option<(BlockAddress, BlockKey)>> {
    let target = fs::read_link(path).map_err(|e| FilesError::io("reading the link", path, e))?;
    let Some(target) = target.to_str().map(str::to_owned) else {
        ctx.skipped.push(Skipped::new(
            path,
            "a symbolic link whose target is not valid UTF-8",
        ));
        return Ok(None);
    };
    if let Err(why) = crate::content::manifest::validate_link_target(&target) {
        ctx.skipped.push(Skipped::new(
            path,
            format!("a symbolic link whose target {why}"),
        ));
        return Ok(None);
    }
    let (a, k) = ctx.put_manifest(&Manifest::Link(LinkManifest {
        name: name.to_owned(),
        target,
        mtime: unix_mtime(meta),
    }))?;
    Ok(Some((a, k)))
}

/// Seals one file. One shorter than the smallest chunk (as its `size_hint` says, and as
/// reading it confirms) is one chunk: it is sealed right here, because starting the pipeline's
/// threads would cost more than sealing it — a folder of course notes is thousands of such
/// files. Anything longer goes through [`seal_stream`]. Both give the same blocks.
#[allow(clippy::too_many_arguments)]
fn add_file(
    ctx: &mut Ctx<'_, '_>,
    mut reader: impl Read + Send,
    size_hint: u64,
    name: &str,
    mode: Option<u32>,
    mtime: Option<i64>,
    path: &Path,
) -> Result<(u64, BlockAddress, BlockKey)> {
    let base = ctx.read_so_far;
    let (refs, size) = if size_hint < CHUNK_MIN as u64 {
        let mut head = Vec::with_capacity(size_hint as usize);
        (&mut reader)
            .take(CHUNK_MIN as u64)
            .read_to_end(&mut head)
            .map_err(|e| FilesError::io("reading", path, e))?;
        if head.len() < CHUNK_MIN {
            let mut refs = Vec::new();
            if !head.is_empty() {
                let (r, block) =
                    crate::content::seal_chunk(ctx.store.secret(), &head, ctx.compress);
                ctx.writer.put(r.address, &block)?;
                refs.push(r);
            }
            (refs, head.len() as u64)
        } else {
            // It grew since it was listed: the rest streams through the pipeline.
            seal_stream(ctx, std::io::Cursor::new(head).chain(reader), path)?
        }
    } else {
        seal_stream(ctx, reader, path)?
    };
    ctx.read_so_far = base + size;
    (ctx.progress)(ctx.read_so_far);
    let tree = build_tree(
        refs,
        MAX_CHUNKS_PER_PAGE,
        Manifest::ChunkPage,
        |c| c.len as u64,
        &mut |m| ctx.put_manifest(m),
    )?;
    let (address, key) = ctx.put_manifest(&Manifest::File(FileManifest {
        name: name.to_owned(),
        size,
        mode,
        mtime,
        chunks: tree,
    }))?;
    Ok((size, address, key))
}

/// Seals a stream: a chunking thread, sealing workers, and this thread writing in order.
/// Returns the chunk references in order and the stream's length.
fn seal_stream(
    ctx: &mut Ctx<'_, '_>,
    reader: impl Read + Send,
    path: &Path,
) -> Result<(Vec<ChunkRef>, u64)> {
    let secret = ctx.store.secret().clone();
    let compress = ctx.compress;
    let workers = worker_count();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<(usize, Vec<u8>)>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<(usize, ChunkRef, Vec<u8>)>(workers * 2);
    // Held by the workers only: when the last one stops (its output closed on an error), the
    // receivers are gone and the producing thread's next send fails instead of blocking.
    let base = ctx.read_so_far;

    let (refs, size) = std::thread::scope(|s| -> Result<_> {
        // Chunking is the one sequential pass; it feeds the sealing workers directly.
        let chunker = s.spawn(move || -> std::io::Result<u64> {
            let mut chunker = Chunker::without_whole_hash(reader);
            let mut i = 0;
            while let Some(chunk) = chunker.next_chunk()? {
                if job_tx.send((i, chunk)).is_err() {
                    break;
                }
                i += 1;
            }
            Ok(chunker.finish().1)
        });
        for _ in 0..workers {
            let (done_tx, job_rx) = (done_tx.clone(), job_rx.clone());
            let secret = &secret;
            s.spawn(move || seal_worker(job_rx, done_tx, secret, compress));
        }
        drop(done_tx);
        drop(job_rx);
        let mut refs: Vec<Option<ChunkRef>> = Vec::new();
        let mut bytes = 0u64;
        let write = (|| -> Result<()> {
            for (i, r, sealed) in done_rx.iter() {
                ctx.writer.put(r.address, &sealed)?;
                if refs.len() <= i {
                    refs.resize(i + 1, None);
                }
                refs[i] = Some(r);
                bytes += r.len as u64;
                (ctx.progress)(base + bytes);
            }
            Ok(())
        })();
        drop(done_rx);
        let chunked = chunker.join();
        write?;
        let size = match chunked {
            Ok(r) => r.map_err(|e| FilesError::io("reading", path, e))?,
            Err(_) => {
                return Err(FilesError::io(
                    "reading",
                    path,
                    std::io::Error::other("chunking thread panicked"),
                ))
            }
        };
        Ok((refs, size))
    })?;
    Ok((refs.into_iter().flatten().collect(), size))
}

fn seal_worker(
    jobs: crossbeam_channel::Receiver<(usize, Vec<u8>)>,
    done: crossbeam_channel::Sender<(usize, ChunkRef, Vec<u8>)>,
    secret: &crate::content::ConvergenceSecret,
    compress: bool,
) {
    for (i, chunk) in jobs {
        let (r, block) = crate::content::seal_chunk(secret, &chunk, compress);
        if done.send((i, r, block)).is_err() {
            return;
        }
    }
}
