//! Fetch jobs and the node's event stream.
//!
//! `POST /api/v1/fetch/{id}` answers at once with a [`Job`]; the fetch runs on its own task
//! and reports here. A job's state can be read (`/jobs/{job}`), followed as server-sent
//! events (`/jobs/{job}/events`) or cancelled. The web page follows everything at once
//! through [`Events`]: jobs, changes to the items held, and the node's status. This module
//! keeps state only; it must not start fetches itself (the handlers do, with the node's
//! client), so that it never holds a lock across a network wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::error::ErrorBody;
use crate::node::{FetchProgress, FetchReport};

/// Finished jobs kept for reading back; older ones are forgotten first.
const FINISHED_KEPT: usize = 100;
/// Progress is put on the shared event stream at most this often per job (each job's own
/// stream and `/jobs/{job}` always have the latest).
const EVENT_EVERY: Duration = Duration::from_millis(250);

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A fetch started through the API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// The job's number, for `/jobs/{job}`.
    pub job: u64,
    /// The content ID being fetched.
    pub id: String,
    pub state: JobState,
    /// Whether the item is pinned when the fetch completes.
    pub pin: bool,
    pub progress: FetchProgress,
    /// Unix seconds.
    pub started: u64,
    /// When done: what the fetch did.
    pub report: Option<FetchReport>,
    /// When failed: why.
    pub error: Option<ErrorBody>,
}

impl Job {
    pub fn finished(&self) -> bool {
        self.state != JobState::Running
    }
}

/// One event of `/api/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A job started, moved or ended.
    Job(Job),
    /// The items held here changed (added, pinned, unpinned, collected): read `/ls` again.
    Items,
    /// The node's state and its store's, every few seconds.
    Status(StatusEvent),
    /// A followed collection has a new version.
    Collection(crate::node::collections::CollectionEvent),
}

/// What a `status` event carries.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusEvent {
    #[serde(flatten)]
    pub node: crate::node::NodeInfo,
    pub store: crate::store::StoreStats,
}

struct Entry {
    state: watch::Sender<Job>,
    abort: Option<tokio::task::AbortHandle>,
    last_event: Instant,
}

/// The jobs of one node and the event stream.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Mutex<BTreeMap<u64, Entry>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
    events: broadcast::Sender<Event>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new()
    }
}

impl Jobs {
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            next: Arc::new(1.into()),
            events: broadcast::channel(256).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding it cannot leave the map half-changed (each change is one
        // insert, update or remove), so a poisoned lock is still good.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an event on the shared stream (nobody listening is fine).
    pub fn announce(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Registers a new running job for `id`.
    pub fn create(&self, id: String, pin: bool) -> Job {
        let job = Job {
            job: self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            id,
            state: JobState::Running,
            pin,
            progress: FetchProgress {
                bytes_done: 0,
                bytes_total: 0,
                peers: 0,
            },
            started: crate::node::now_secs(),
            report: None,
            error: None,
        };
        let mut jobs = self.lock();
        jobs.insert(
            job.job,
            Entry {
                state: watch::channel(job.clone()).0,
                abort: None,
                last_event: Instant::now(),
            },
        );
        forget_old(&mut jobs);
        drop(jobs);
        self.announce(Event::Job(job.clone()));
        job
    }

    /// Lets `cancel` stop the job's task.
    pub fn set_abort(&self, job: u64, abort: tokio::task::AbortHandle) {
        if let Some(e) = self.lock().get_mut(&job) {
            e.abort = Some(abort);
        }
    }

    pub fn progress(&self, job: u64, p: FetchProgress) {
        let mut jobs = self.lock();
        let Some(e) = jobs.get_mut(&job) else { return };
        e.state.send_modify(|j| j.progress = p);
        if e.last_event.elapsed() >= EVENT_EVERY {
            e.last_event = Instant::now();
            let j = e.state.borrow().clone();
            drop(jobs);
            self.announce(Event::Job(j));
        }
    }

    /// Ends a job (unless it was cancelled first).
    pub fn finish(&self, job: u64, result: Result<FetchReport, ErrorBody>) {
        self.end(job, |j| match result {
            Ok(r) => {
                j.progress.bytes_done = r.size;
                j.progress.bytes_total = r.size;
                j.report = Some(r);
                j.state = JobState::Done;
            }
            Err(e) => {
                j.error = Some(e);
                j.state = JobState::Failed;
            }
        });
        self.announce(Event::Items);
    }

    /// Forgets a finished job (the page's "dismiss"); false if it runs or is unknown.
    pub fn forget(&self, job: u64) -> bool {
        let mut jobs = self.lock();
        let finished = jobs.get(&job).is_some_and(|e| e.state.borrow().finished());
        if finished {
            jobs.remove(&job);
        }
        finished
    }

    /// Stops a running job; false if there is no such job.
    pub fn cancel(&self, job: u64) -> bool {
        let abort = match self.lock().get_mut(&job) {
            Some(e) => e.abort.take(),
            None => return false,
        };
        if let Some(a) = abort {
            a.abort();
        }
        self.end(job, |j| j.state = JobState::Cancelled);
        true
    }

    fn end(&self, job: u64, f: impl FnOnce(&mut Job)) {
        let jobs = self.lock();
        let Some(e) = jobs.get(&job) else { return };
        let mut changed = false;
        e.state.send_if_modified(|j| {
            if j.finished() {
                return false;
            }
            f(j);
            changed = true;
            true
        });
        let j = e.state.borrow().clone();
        drop(jobs);
        if changed {
            self.announce(Event::Job(j));
        }
    }

    pub fn get(&self, job: u64) -> Option<Job> {
        self.lock().get(&job).map(|e| e.state.borrow().clone())
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<Job> {
        self.lock()
            .values()
            .rev()
            .map(|e| e.state.borrow().clone())
            .collect()
    }

    /// Follows one job: its state now and on every change.
    pub fn watch(&self, job: u64) -> Option<watch::Receiver<Job>> {
        self.lock().get(&job).map(|e| e.state.subscribe())
    }
}

/// Forgets the oldest finished jobs beyond [`FINISHED_KEPT`]; running ones are always kept.
fn forget_old(jobs: &mut BTreeMap<u64, Entry>) {
    let finished: Vec<u64> = jobs
        .iter()
        .filter(|(_, e)| e.state.borrow().finished())
        .map(|(k, _)| *k)
        .collect();
    for k in finished
        .iter()
        .take(finished.len().saturating_sub(FINISHED_KEPT))
    {
        jobs.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_then_ends_once() {
        let jobs = Jobs::new();
        let mut events = jobs.subscribe();
        let j = jobs.create("x".into(), true);
        assert!(matches!(events.try_recv(), Ok(Event::Job(e)) if e.job == j.job));
        jobs.finish(
            j.job,
            Err(ErrorBody {
                error: "not_found".into(),
                detail: "none".into(),
            }),
        );
        assert_eq!(jobs.get(j.job).map(|j| j.state), Some(JobState::Failed));
        // Cancelling a finished job changes nothing.
        assert!(jobs.cancel(j.job));
        assert_eq!(jobs.get(j.job).map(|j| j.state), Some(JobState::Failed));
        assert!(!jobs.cancel(999));
    }

    #[test]
    fn finished_jobs_are_forgotten_beyond_the_cap() {
        let jobs = Jobs::new();
        let running = jobs.create("running".into(), true);
        for i in 0..FINISHED_KEPT + 10 {
            let j = jobs.create(format!("{i}"), true);
            jobs.cancel(j.job);
        }
        jobs.create("last".into(), true);
        assert!(jobs.get(running.job).is_some(), "running jobs are kept");
        assert!(jobs.list().len() <= FINISHED_KEPT + 2);
        assert!(jobs.get(2).is_none(), "the oldest finished job is gone");
    }
}
