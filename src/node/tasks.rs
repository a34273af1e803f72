//! One way to run a node's background tasks and to stop them all: each runs in one
//! `TaskTracker` beside one `CancellationToken` (the collections service keeps the same pair
//! for its own work), so stopping is one call that returns only when every task has ended and
//! dropped what it held (the store, the client). This module decides nothing about what runs:
//! that is the node's `Role`.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The background tasks of one node, by name.
#[derive(Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    /// Runs `work` until it ends or the tasks are stopped, whichever is first.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        let handle = self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = work => {}
            }
        });
        self.running.push((name, handle));
    }

    /// The tasks that have not ended, by name.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.running
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Stops every task and waits until each has ended.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_returns_once_every_task_has_dropped_what_it_held() {
        let held = std::sync::Arc::new(());
        let mut tasks = Tasks::default();
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
    }
}
