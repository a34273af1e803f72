//! Reading an item into an HTTP response body, for `/api/v1/cat` and the gateway.
//!
//! An item held whole is claimed by a read session (so that a `gc` cannot take it while it is
//! read) and streamed from the store on a blocking thread; one that is not held is fetched
//! first, into that session, without pinning it (as `ipfs cat` reads through the network
//! without keeping what it read). Memory is bounded by the channel between the reading thread
//! and the response: a few buffers of 1 MiB, whatever the item's size.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::state::Api;
use crate::content::ContentId;
use crate::files::{self, browse::Head};
use crate::node::{begin_session, fetch_in, FetchOptions};
use crate::store::{Session, SessionKind, Store};

type Chunk = Result<bytes::Bytes, std::io::Error>;

/// A blocking writer that forwards what it is given to a response body. Not tokio-util's
/// `SyncIoBridge` over a pipe: a read that fails half-way must reach the client as an error in
/// the body stream (so that the transfer is seen to have failed), and a pipe can only end.
struct ChannelWriter(mpsc::Sender<Chunk>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(b)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn receiver_stream<T>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
{
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An item made readable here, and the session that keeps it so while it is read.
pub(super) struct Opened {
    pub id: ContentId,
    pub head: Head,
    session: Arc<Session>,
}

/// Claims `id` for reading, fetching it first (unpinned) when it is not held whole.
pub(super) async fn open(api: &Api, id: &ContentId) -> Result<Opened, ApiError> {
    open_within(api, id, None).await
}

/// [`open`], giving up a fetch after `stall` without progress (default: the node's).
pub(super) async fn open_within(
    api: &Api,
    id: &ContentId,
    stall: Option<std::time::Duration>,
) -> Result<Opened, ApiError> {
    let session = begin_session(&api.store, SessionKind::Read, id.to_string()).await?;
    if !claim_whole(api, &session, id).await? {
        fetch_through(api, &session, id, None, stall).await?;
    }
    let (store, i) = (Arc::clone(&api.store), *id);
    let head = tokio::task::spawn_blocking(move || files::browse::head(&store, &i)).await??;
    Ok(Opened {
        id: *id,
        head,
        session,
    })
}

/// Opens `path` inside the opened folder (the same session keeps it: it is part of the item).
pub(super) async fn open_path(api: &Api, opened: Opened, path: &str) -> Result<Opened, ApiError> {
    if path.trim_matches('/').is_empty() {
        return Ok(opened);
    }
    let (store, id, p) = (Arc::clone(&api.store), opened.id, path.to_owned());
    let (id, head) = tokio::task::spawn_blocking(move || {
        let at = files::browse::resolve(&store, &id, &p)?;
        let head = files::browse::head(&store, &at)?;
        Ok::<_, files::FilesError>((at, head))
    })
    .await??;
    Ok(Opened {
        id,
        head,
        session: opened.session,
    })
}

/// Claims `id` in `session`; true when every block of it is held here.
async fn claim_whole(api: &Api, session: &Arc<Session>, id: &ContentId) -> Result<bool, ApiError> {
    let (s, store, i) = (Arc::clone(session), Arc::clone(&api.store), *id);
    let stat = tokio::task::spawn_blocking(move || {
        s.claim_item(&i.root)?;
        Ok::<_, crate::store::StoreError>(files::stat(&store, &i))
    })
    .await??;
    match stat {
        Ok(st) => Ok(st.chunks_local == st.chunks),
        Err(
            files::FilesError::NotHeld { .. }
            | files::FilesError::Store(crate::store::StoreError::Missing { .. }),
        ) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Fetches `id` into `session` without pinning it, writing `output` as the chunks arrive when
/// given. A read touches no pin: the session holds what it fetched while it is read, and a
/// pinned item's missing blocks, once here, are kept by its pin.
pub(super) async fn fetch_through(
    api: &Api,
    session: &Arc<Session>,
    id: &ContentId,
    output: Option<files::Output>,
    stall: Option<std::time::Duration>,
) -> Result<(), ApiError> {
    let opts = FetchOptions {
        pin: false,
        stall_timeout: stall.unwrap_or(api.fetch.stall_timeout),
        ..api.fetch.clone()
    };
    fetch_in(&api.client, &api.store, session, id, &opts, &|_| {}, output).await?;
    api.jobs.announce(super::jobs::Event::Items);
    Ok(())
}

/// The bytes of the opened file, or of `range` of it, as a response body. Read one chunk at
/// a time, each on a short blocking task: a reader that stops reading holds no thread (with
/// one held per response, sixteen slow readers stalled every store call of the node), only
/// the piece it has not taken yet.
pub(super) fn body(api: &Api, opened: Opened, range: Option<Range<u64>>) -> Body {
    struct Reading {
        store: Arc<Store>,
        opened: Opened,
        range: Option<Range<u64>>,
        plan: Option<std::collections::VecDeque<files::browse::RangePart>>,
        failed: bool,
    }
    let fail = |e: String| std::io::Error::other(e);
    let state = Reading {
        store: Arc::clone(&api.store),
        opened,
        range,
        plan: None,
        failed: false,
    };
    let stream = futures::stream::unfold(state, move |mut st| async move {
        if st.failed {
            return None;
        }
        if st.plan.is_none() {
            let (store, id, range) = (Arc::clone(&st.store), st.opened.id, st.range.clone());
            let planned =
                tokio::task::spawn_blocking(move || files::browse::range_plan(&store, &id, range))
                    .await;
            match planned {
                Ok(Ok(p)) => st.plan = Some(p.into()),
                Ok(Err(e)) => {
                    tracing::warn!(cid = %st.opened.id, error = %e, "reading for a response failed");
                    st.failed = true;
                    return Some((Err(fail(e.to_string())), st));
                }
                Err(e) => {
                    st.failed = true;
                    return Some((Err(fail(e.to_string())), st));
                }
            }
        }
        let (c, part) = st.plan.as_mut()?.pop_front()?;
        let store = Arc::clone(&st.store);
        let read =
            tokio::task::spawn_blocking(move || files::browse::read_part(&store, &c, part)).await;
        match read {
            Ok(Ok(bytes)) => Some((Ok(bytes), st)),
            Ok(Err(e)) => {
                tracing::warn!(cid = %st.opened.id, error = %e, "reading for a response failed");
                st.failed = true;
                Some((Err(fail(e.to_string())), st))
            }
            Err(e) => {
                st.failed = true;
                Some((Err(fail(e.to_string())), st))
            }
        }
    });
    Body::from_stream(stream)
}

/// A file's bytes as they arrive: held here, read from the store; not held, streamed while
/// it is fetched. Fails with a status (not a cut-off body) when it cannot be read at all.
pub(super) async fn streaming_body(
    api: &Api,
    id: &ContentId,
    stall: Option<std::time::Duration>,
) -> Result<Body, ApiError> {
    let session = begin_session(&api.store, SessionKind::Read, id.to_string()).await?;
    if claim_whole(api, &session, id).await? {
        let (store, i) = (Arc::clone(&api.store), *id);
        let head = tokio::task::spawn_blocking(move || files::browse::head(&store, &i)).await??;
        if head.kind != "file" {
            return Err(files::FilesError::IsFolder { id: id.to_string() }.into());
        }
        let opened = Opened {
            id: *id,
            head,
            session,
        };
        return Ok(body(api, opened, None));
    }
    let (tx, mut rx) = mpsc::channel(8);
    let out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx.clone()));
    let (api2, id2) = (api.clone(), *id);
    tokio::spawn(async move {
        let output = files::Output::Stream(Box::new(out));
        if let Err(e) = fetch_through(&api2, &session, &id2, Some(output), stall).await {
            let _ = tx.send(Err(std::io::Error::other(e))).await;
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => {
            return Err(match e.into_inner().map(|e| e.downcast::<ApiError>()) {
                Some(Ok(api_error)) => *api_error,
                Some(Err(other)) => ApiError::internal(other),
                None => ApiError::internal("reading failed"),
            })
        }
        first => first,
    };
    let rest = receiver_stream(rx);
    Ok(Body::from_stream(futures::StreamExt::chain(
        futures::stream::iter(first),
        rest,
    )))
}
