//! Taking in the DHT records other peers send, off the event loop and within limits.
//!
//! kad is set to filter every inbound insert (`StoreInserts::FilterBoth`): the event loop
//! checks that a record is one of storgo's kinds and hands it here through a bounded queue,
//! and one thread writes what it receives in batches, one redb transaction per batch. So a
//! burst of `ADD_PROVIDER` or announcements costs the event loop a queue push each — never a
//! disk write — and when the queue is full records are dropped (they are soft state that
//! their owners republish) rather than waited for. Per-peer caps ([`ProviderCounts`]) keep
//! one peer from filling the table. This module must not touch the Swarm: announcements are
//! answered through the event loop's answer channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;

use crate::network::announce::{AnnounceResponse, RefuseReason};
use crate::network::records::{ProviderCounts, RemoteProvider};
use crate::network::DhtStore;

use super::Answer;

/// Jobs waiting for the writer, at most; more are dropped (records) or refused (announcements).
pub(crate) const QUEUE: usize = 4096;
/// Records written in one transaction, at most.
const BATCH: usize = 1024;
/// How often expired records are swept.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

pub(crate) enum Job {
    /// One `ADD_PROVIDER` that kad received.
    Provider(RemoteProvider),
    /// A value record kad received (`PUT_VALUE`): kept only if it is a collection's
    /// latest-version record that checks out and is newer than the one held
    /// (`collection-v1.md`).
    Value(libp2p::kad::Record),
    /// An announcement (`announce-v1.md`): many records from one peer, answered with the count.
    Announcement {
        records: Vec<RemoteProvider>,
        channel: ResponseChannel<AnnounceResponse>,
    },
}

/// What the intake has done, for status and tests.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    /// Records written (new or refreshed).
    pub stored: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records refused: not a storgo kind, or their peer over its cap.
    pub refused: AtomicU64,
}

/// The event loop's end of the intake.
pub(crate) struct RecordIntake {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    pub(crate) counters: Arc<IntakeCounters>,
}

impl RecordIntake {
    /// Starts the writer thread. `per_peer` is the most provider records one peer may have.
    pub(crate) fn start(
        dht: DhtStore,
        ttl: Duration,
        per_peer: u64,
        answers: mpsc::Sender<Answer>,
    ) -> Self {
        Self::start_sweeping(dht, ttl, per_peer, answers, EXPIRE_EVERY)
    }

    /// [`start`](Self::start), sweeping expired records every `sweep`.
    fn start_sweeping(
        dht: DhtStore,
        ttl: Duration,
        per_peer: u64,
        answers: mpsc::Sender<Answer>,
        sweep: Duration,
    ) -> Self {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let counters = Arc::new(IntakeCounters::default());
        let c = Arc::clone(&counters);
        let writer = std::thread::Builder::new()
            .name("storgo-records".into())
            .spawn(move || write_records(dht, ttl, per_peer, sweep, rx, answers, c));
        let writer = match writer {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the DHT record writer");
                None
            }
        };
        Self {
            jobs: Some(jobs),
            writer,
            counters,
        }
    }

    /// Queues a job; when the queue is full, hands an announcement's channel back with the
    /// refusal to send (a single record is dropped and counted).
    #[allow(clippy::result_large_err)]
    pub(crate) fn offer(
        &self,
        job: Job,
    ) -> Result<(), (ResponseChannel<AnnounceResponse>, AnnounceResponse)> {
        let Some(jobs) = &self.jobs else {
            return Ok(());
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner() {
                Job::Provider(_) | Job::Value(_) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Job::Announcement { records, channel } => {
                    self.counters
                        .dropped
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    Err((
                        channel,
                        AnnounceResponse::Refused {
                            reason: RefuseReason::Busy,
                            message: "record store busy; announce again later".into(),
                        },
                    ))
                }
            },
        }
    }
}

impl Drop for RecordIntake {
    /// Lets the writer finish the batch in hand, so that the store is released when the node
    /// has stopped.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn write_records(
    dht: DhtStore,
    ttl: Duration,
    per_peer: u64,
    sweep: Duration,
    rx: crossbeam_channel::Receiver<Job>,
    answers: mpsc::Sender<Answer>,
    counters: Arc<IntakeCounters>,
) {
    let mut counts = ProviderCounts::new(dht.count_by_provider().unwrap_or_default(), per_peer);
    let mut swept = Instant::now();
    loop {
        let first = match rx.recv_timeout(sweep) {
            Ok(job) => Some(job),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = Vec::new();
        for job in first.into_iter().chain(rx.try_iter().take(BATCH)) {
            match job {
                Job::Provider(r) => batch.push(r),
                Job::Value(record) => {
                    let n = match store_value(&dht, record, ttl) {
                        Ok(()) => &counters.stored,
                        Err(why) => {
                            tracing::debug!(reason = %why, "value record refused");
                            &counters.refused
                        }
                    };
                    n.fetch_add(1, Ordering::Relaxed);
                }
                Job::Announcement { records, channel } => {
                    let answer = match store(&dht, &records, ttl, &mut counts, &counters) {
                        Ok(count) => AnnounceResponse::Stored { count },
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot store announced records");
                            AnnounceResponse::Refused {
                                reason: RefuseReason::Busy,
                                message: "record store unavailable".into(),
                            }
                        }
                    };
                    if answers
                        .blocking_send(Answer::Announce(channel, answer))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store(&dht, &batch, ttl, &mut counts, &counters) {
                tracing::warn!(error = %e, records = batch.len(), "cannot store provider records");
            }
        }
        if swept.elapsed() >= sweep {
            swept = Instant::now();
            let n = dht.remove_expired();
            if n > 0 {
                tracing::debug!(rows = n, "expired DHT records removed");
                if let Ok(c) = dht.count_by_provider() {
                    counts = ProviderCounts::new(c, per_peer);
                }
            }
        }
    }
}

/// Keeps a collection's latest-version record if it checks out and is newer than the one held.
fn store_value(
    dht: &DhtStore,
    mut record: libp2p::kad::Record,
    ttl: Duration,
) -> Result<(), String> {
    use crate::collections::Latest;
    use libp2p::kad::store::RecordStore;
    let incoming = Latest::open_at(&record.key, &record.value).map_err(|e| e.to_string())?;
    if let Some(held) = dht.get(&record.key) {
        if let Ok(held) = Latest::open_at(&record.key, &held.value) {
            Latest::may_replace(&held, &incoming).map_err(|e| e.to_string())?;
        }
    }
    // This node's TTL, never the sender's; the sender's name is not kept (anyone may put it).
    record.expires = Some(Instant::now() + ttl);
    record.publisher = None;
    let mut dht = dht.clone();
    dht.put(record).map_err(|e| format!("{e:?}"))
}

fn store(
    dht: &DhtStore,
    records: &[RemoteProvider],
    ttl: Duration,
    counts: &mut ProviderCounts,
    counters: &IntakeCounters,
) -> Result<u32, crate::store::StoreError> {
    let refused_before = counts.refused;
    let n = dht.add_remote(records, ttl, counts)?;
    counters.stored.fetch_add(u64::from(n), Ordering::Relaxed);
    counters
        .refused
        .fetch_add(counts.refused - refused_before, Ordering::Relaxed);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use libp2p::PeerId;

    fn intake(ttl: Duration, per_peer: u64) -> (tempfile::TempDir, DhtStore, RecordIntake) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
        let local = PeerId::random();
        let dht = DhtStore::new(Arc::clone(&store), local);
        let (answers, _) = mpsc::channel(1);
        let intake = RecordIntake::start_sweeping(
            DhtStore::new(store, local),
            ttl,
            per_peer,
            answers,
            Duration::from_millis(20),
        );
        (dir, dht, intake)
    }

    fn offer(intake: &RecordIntake, n: usize, provider: PeerId) {
        for i in 0..n {
            let root = crate::content::BlockAddress::of(&i.to_le_bytes());
            let job = Job::Provider(RemoteProvider {
                root,
                provider,
                addrs: vec![],
            });
            assert!(
                intake.offer(job).is_ok(),
                "single records are never refused"
            );
        }
    }

    fn settle(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn every_record_offered_is_stored_refused_or_dropped_and_one_peer_is_capped() {
        let (_dir, dht, intake) = intake(Duration::from_secs(3600), 100);
        let greedy = PeerId::random();
        let offered = 4 * QUEUE;
        offer(&intake, offered, greedy);
        let c = Arc::clone(&intake.counters);
        let total = || {
            c.stored.load(Ordering::Relaxed)
                + c.refused.load(Ordering::Relaxed)
                + c.dropped.load(Ordering::Relaxed)
        };
        settle("every record to be accounted for", || {
            total() == offered as u64
        });
        assert_eq!(c.stored.load(Ordering::Relaxed), 100);
        assert_eq!(dht.count_by_provider().unwrap()[&greedy], 100);
    }

    #[test]
    fn expired_records_are_swept_off_the_writer_thread() {
        let (_dir, dht, intake) = intake(Duration::ZERO, 1000);
        let peer = PeerId::random();
        offer(&intake, 50, peer);
        let c = Arc::clone(&intake.counters);
        settle("the records to be written", || {
            c.stored.load(Ordering::Relaxed) == 50
        });
        settle("the sweep to remove them", || {
            dht.count_by_provider().unwrap().is_empty()
        });
        // The sweep recounted: the peer may send its full allowance again.
        offer(&intake, 50, peer);
        settle("the second batch", || {
            c.stored.load(Ordering::Relaxed) == 100
        });
        assert_eq!(c.refused.load(Ordering::Relaxed), 0);
        drop(intake);
    }
}
