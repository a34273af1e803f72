//! One way to run a node's background tasks and to stop them all: each runs in one
//! `TaskTracker` beside one `CancellationToken` (the collections service keeps the same pair
//! for its own work), so stopping is one call that returns only when every task has ended and
//! dropped what it held (the store, the client). This module decides nothing about what runs:
//! that is the node's `Role`. Periodic jobs (repair rounds, republish sweeps) run through one
//! [`periodic`] loop whose timing is tested here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::Counters;

/// The background tasks of one node, by name; which run is shown in the node's counters
/// (`storgo status`, `storgo_background_tasks`).
pub(crate) struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    counters: Arc<Counters>,
}

impl Tasks {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            counters,
        }
    }

    /// Runs `work` until it ends or the tasks are stopped, whichever is first.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        let counters = Arc::clone(&self.counters);
        counters.task_running(name, true);
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = work => {}
            }
            counters.task_running(name, false);
        });
    }

    /// The tasks that have not ended, by name.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.counters.running_tasks()
    }

    /// Stops every task and waits until each has ended.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// When a periodic job runs: every `every`, each wait drawn uniformly within ±`jitter` of it
/// (so that the nodes of a network started together do not all sweep at once), the first
/// either at once or after one wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub every: Duration,
    /// A fraction of `every`, below 1.
    pub jitter: f64,
    pub first_at_once: bool,
}

impl Schedule {
    /// The wait for a draw `u` in [0, 1).
    fn wait(&self, u: f64) -> Duration {
        let j = self.jitter.clamp(0.0, 0.99);
        self.every.mul_f64(1.0 - j + 2.0 * j * u.clamp(0.0, 1.0))
    }
}

/// Runs `job` by `schedule` until the task is stopped (a job under way is stopped with it).
pub(crate) async fn periodic<F, Fut>(schedule: Schedule, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    if schedule.first_at_once {
        job().await;
    }
    loop {
        tokio::time::sleep(schedule.wait(rand::random::<f64>())).await;
        job().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn waits_stay_within_the_jitter() {
        let s = Schedule {
            every: Duration::from_secs(100),
            jitter: 0.25,
            first_at_once: false,
        };
        assert_eq!(s.wait(0.0), Duration::from_secs(75));
        assert_eq!(s.wait(0.5), Duration::from_secs(100));
        assert!(s.wait(0.999_999) <= Duration::from_secs(125));
        let exact = Schedule { jitter: 0.0, ..s };
        assert_eq!(exact.wait(0.7), Duration::from_secs(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_job_runs_once_per_interval_and_stops_with_its_tasks() {
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::new(Default::default());
        for (name, first_at_once) in [("later", false), ("at once", true)] {
            let r = Arc::clone(&runs);
            let schedule = Schedule {
                every: Duration::from_secs(60),
                jitter: 0.1,
                first_at_once,
            };
            tasks.spawn(name, async move {
                periodic(schedule, || {
                    let r = Arc::clone(&r);
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .await
            });
        }
        tokio::task::yield_now().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "only the first-at-once job ran"
        );
        tokio::time::sleep(Duration::from_secs(53)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "no wait is under 54 s");
        // Ten intervals: each job runs 9 to 11 more times (waits of 54 to 66 s).
        tokio::time::sleep(Duration::from_secs(600 - 53)).await;
        let n = runs.load(Ordering::SeqCst);
        assert!((1 + 2 * 9..=1 + 2 * 11).contains(&n), "{n} runs");
        tasks.stop().await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(runs.load(Ordering::SeqCst), n, "nothing runs after stop");
    }

    #[tokio::test]
    async fn stop_returns_once_every_task_has_dropped_what_it_held() {
        let held = std::sync::Arc::new(());
        let counters = Arc::new(Counters::default());
        let mut tasks = Tasks::new(Arc::clone(&counters));
        for name in ["a", "b"] {
            let mine = std::sync::Arc::clone(&held);
            tasks.spawn(name, async move {
                let _keep = mine;
                std::future::pending::<()>().await;
            });
        }
        tasks.spawn("done", async {});
        tokio::task::yield_now().await;
        let mut names = tasks.names();
        names.sort();
        assert!(names.starts_with(&["a", "b"]), "{names:?}");
        tasks.stop().await;
        assert_eq!(std::sync::Arc::strong_count(&held), 1, "every task let go");
        assert!(
            counters.running_tasks().is_empty(),
            "stopped tasks are shown as ended: {:?}",
            counters.running_tasks()
        );
    }
}
