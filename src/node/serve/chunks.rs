//! Serving peers' chunk-exchange requests from the store, within bounds.
//!
//! A fixed pool of reading threads takes requests from one bounded queue; each peer may have
//! at most `in_flight_per_peer` requests admitted at once and send at most
//! `requests_per_second_per_peer` (`network::ServeLimits`). A request beyond any bound is
//! answered `Busy` at once (the asker tries another provider or comes back later), so a peer
//! that floods the node costs it a queue slot and a short answer per request — never a thread
//! or a block's worth of memory — and the peers fetching honestly keep their share. The event
//! loop owns the in-flight counts (admits, and is told when each answer goes out); the
//! readers never touch the Swarm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::content::manifest::MAX_MANIFEST_BLOCK;
use crate::content::{BlockAddress, MAX_BLOCK_SIZE};
use crate::network::chunks::{ErrorCode, MAX_HAVE};
use crate::network::{ChunkRequest, ChunkResponse, ServeLimits};
use crate::store::{Store, StoreError};

use super::Answer;

/// Threads reading blocks for peers.
pub(crate) const READERS: usize = 4;
/// Requests admitted and waiting for a reader, at most.
pub(crate) const QUEUE: usize = 256;
/// Peers whose request rate is remembered, at most (idle ones are forgotten first).
const MAX_RATED_PEERS: usize = 4096;

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64) -> Self {
        Self {
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, rate: f64) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
    }

    /// Takes one token if there is one.
    fn take_one(&mut self, rate: f64) -> bool {
        self.refill(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt; returns how long to wait until the debt is paid.
    fn take(&mut self, n: f64, rate: f64) -> Duration {
        self.refill(rate);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

struct Job {
    peer: PeerId,
    request: ChunkRequest,
    channel: ResponseChannel<ChunkResponse>,
}

/// Each peer's requests admitted and not yet answered.
struct InFlight(HashMap<PeerId, usize>, usize);

impl InFlight {
    fn new(per_peer: usize) -> Self {
        Self(HashMap::new(), per_peer)
    }

    /// Takes a slot for `peer`, unless it already has its limit.
    fn take(&mut self, peer: PeerId) -> bool {
        let n = self.0.entry(peer).or_insert(0);
        if *n >= self.1 {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&mut self, peer: &PeerId) {
        if let Some(n) = self.0.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(peer);
            }
        }
    }
}

/// The bounded service; see the module docs.
pub(crate) struct ChunkService {
    /// `None` only while dropping.
    jobs: Option<crossbeam_channel::Sender<Job>>,
    in_flight: InFlight,
    /// Each peer's request rate (`ServeLimits::requests_per_second_per_peer`).
    rates: HashMap<PeerId, Bucket>,
    rate: f64,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ChunkService {
    /// Starts the readers; they answer through `answers` and stop when the service is dropped.
    pub(crate) fn start(
        store: Arc<Store>,
        answers: mpsc::Sender<Answer>,
        limits: &ServeLimits,
    ) -> Self {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let mut readers = Vec::with_capacity(READERS);
        // The readers share one budget of bytes a second: a reader over it waits before its
        // answer goes out, the queue fills, and further requests are answered Busy.
        let bandwidth = limits
            .bytes_per_second
            .map(|r| (Arc::new(Mutex::new(Bucket::full(r as f64))), r as f64));
        let unchecked = limits.unchecked;
        for i in 0..READERS {
            let (rx, store, answers) = (rx.clone(), Arc::clone(&store), answers.clone());
            let bandwidth = bandwidth.clone();
            let started = std::thread::Builder::new()
                .name(format!("storgo-serve-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        // A requester that has gone (disconnected, timed out) costs no disk
                        // read and no share of the budget; an answer still goes back, which
                        // frees its in-flight slot, and is dropped there.
                        let response = if job.channel.is_open() {
                            serve(&store, job.request, unchecked)
                        } else {
                            ChunkResponse::NotFound
                        };
                        if let (Some((bucket, rate)), ChunkResponse::Block(b)) =
                            (&bandwidth, &response)
                        {
                            let wait = match bucket.lock() {
                                Ok(mut bucket) => bucket.take(b.len() as f64, *rate),
                                Err(_) => Duration::ZERO,
                            };
                            std::thread::sleep(wait);
                        }
                        if answers
                            .blocking_send(Answer::Chunk(job.peer, job.channel, response))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            match started {
                Ok(h) => readers.push(h),
                Err(e) => tracing::error!(error = %e, "cannot start a serving thread"),
            }
        }
        Self {
            jobs: Some(jobs),
            in_flight: InFlight::new(limits.in_flight_per_peer.max(1)),
            rates: HashMap::new(),
            rate: f64::from(limits.requests_per_second_per_peer.max(1)),
            readers,
        }
    }

    /// Admits `peer`'s request, or hands back its channel with the `Busy` answer to send now.
    #[allow(clippy::result_large_err)]
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        request: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
    ) -> Result<(), (ResponseChannel<ChunkResponse>, ChunkResponse)> {
        let busy = |why: &str| ChunkResponse::Error {
            code: ErrorCode::Busy,
            message: why.into(),
        };
        if !self.within_rate(peer) {
            tracing::debug!(peer = %peer, "busy: the peer is over its request rate");
            return Err((channel, busy("too many requests a second from you")));
        }
        if !self.in_flight.take(peer) {
            tracing::debug!(peer = %peer, "busy: the peer's requests in flight are at the limit");
            return Err((channel, busy("too many requests in flight from you")));
        }
        let job = Job {
            peer,
            request,
            channel,
        };
        let Some(jobs) = &self.jobs else {
            self.in_flight.give_back(&peer);
            return Err((job.channel, busy("stopping")));
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.in_flight.give_back(&peer);
                tracing::debug!(peer = %peer, "busy: the serving queue is full");
                Err((e.into_inner().channel, busy("serving queue full")))
            }
        }
    }

    fn within_rate(&mut self, peer: PeerId) -> bool {
        let rate = self.rate;
        if self.rates.len() >= MAX_RATED_PEERS && !self.rates.contains_key(&peer) {
            // Peers whose bucket has refilled have nothing to remember.
            self.rates.retain(|_, b| {
                b.refill(rate);
                b.tokens < rate
            });
        }
        self.rates
            .entry(peer)
            .or_insert_with(|| Bucket::full(rate))
            .take_one(rate)
    }

    /// One of `peer`'s admitted requests was answered.
    pub(crate) fn done(&mut self, peer: &PeerId) {
        self.in_flight.give_back(peer);
    }
}

/// Answers one chunk-exchange request from the local store.
fn serve(store: &Store, request: ChunkRequest, unchecked: bool) -> ChunkResponse {
    let read_stored = |a: &BlockAddress, limit| {
        if unchecked {
            store.read_block(a, limit)
        } else {
            store.read_verified(a, limit)
        }
    };
    let read = |a, limit| match store.has_block(&a) {
        Ok(false) => ChunkResponse::NotFound,
        // Checked against its address before it leaves: a block rotten on this disk is set
        // aside (so it counts as missing and a repair brings it back) and answered NotFound,
        // instead of sent to a peer that would book this node for lying.
        Ok(true) => match read_stored(&a, limit) {
            Ok(b) => ChunkResponse::Block(b),
            Err(StoreError::Missing { .. }) => ChunkResponse::NotFound,
            Err(StoreError::Corrupt { .. }) => {
                match store.check_block(&a) {
                    Ok(c) => {
                        tracing::warn!(cid = %a, check = ?c, "a block asked for was corrupt here; set aside, answered not found")
                    }
                    Err(e) => {
                        tracing::warn!(cid = %a, error = %e, "a block asked for was corrupt here and could not be set aside")
                    }
                }
                ChunkResponse::NotFound
            }
            Err(StoreError::OverLimit { len, limit, .. }) => ChunkResponse::Error {
                code: ErrorCode::BadRequest,
                message: format!(
                    "the block is {len} bytes, over the {limit}-byte limit of the op asked with"
                ),
            },
            Err(e) => {
                tracing::warn!(cid = %a, error = %e, "cannot serve block");
                ChunkResponse::Error {
                    code: ErrorCode::Internal,
                    message: "cannot read block".into(),
                }
            }
        },
        Err(_) => ChunkResponse::Error {
            code: ErrorCode::Internal,
            message: "index unavailable".into(),
        },
    };
    match request {
        ChunkRequest::GetManifest(a) => read(a, MAX_MANIFEST_BLOCK),
        ChunkRequest::GetChunk(a) => read(a, MAX_BLOCK_SIZE),
        ChunkRequest::Invalid(why) | ChunkRequest::Incomplete(why) => bad_request(why),
        ChunkRequest::Have(list) if list.len() > MAX_HAVE => ChunkResponse::Error {
            code: ErrorCode::BadRequest,
            message: format!("at most {MAX_HAVE} addresses"),
        },
        ChunkRequest::Have(list) => match store.have_blocks(&list) {
            Ok(bits) => ChunkResponse::Have(bits),
            Err(_) => ChunkResponse::Error {
                code: ErrorCode::Internal,
                message: "index unavailable".into(),
            },
        },
    }
}

/// The answer to a request that is malformed or over a limit.
pub(crate) fn bad_request(why: String) -> ChunkResponse {
    ChunkResponse::Error {
        code: ErrorCode::BadRequest,
        message: why,
    }
}

impl Drop for ChunkService {
    /// Stops the readers and waits for them (each finishes at most the read in hand), so that
    /// when the node has stopped nothing of it still holds the store — the next open of the
    /// data dir (`storgo unpin` after the node) must not find it in use.
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_seconds_worth_and_refills() {
        let mut b = Bucket::full(10.0);
        for _ in 0..10 {
            assert!(b.take_one(10.0));
        }
        assert!(
            !b.take_one(10.0),
            "the eleventh within the second is refused"
        );
        b.at -= Duration::from_millis(200);
        assert!(
            b.take_one(10.0) && b.take_one(10.0),
            "200 ms later, two more"
        );
        let mut bytes = Bucket::full(1000.0);
        assert_eq!(bytes.take(500.0, 1000.0), Duration::ZERO);
        let wait = bytes.take(1000.0, 1000.0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn a_peer_gets_at_most_its_share_and_others_are_unaffected() {
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        const PER_PEER: usize = 32;
        let mut f = InFlight::new(PER_PEER);
        for _ in 0..PER_PEER {
            assert!(f.take(flooder));
        }
        assert!(
            !f.take(flooder),
            "one over the limit is refused (answered Busy)"
        );
        assert!(f.take(honest), "another peer still gets a slot");
        f.give_back(&flooder);
        assert!(f.take(flooder), "an answer frees a slot");
        assert!(!f.take(flooder));
        for _ in 0..PER_PEER {
            f.give_back(&flooder);
        }
        f.give_back(&honest);
        assert!(
            f.0.is_empty(),
            "no state is kept for peers with nothing in flight"
        );
    }
}
