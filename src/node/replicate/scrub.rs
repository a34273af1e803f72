//! Scrub: re-reading the replicas this node holds, at a gentle rate, the least recently
//! verified first, and re-hashing every block against its address. A replica with bad or
//! missing blocks is marked partial at once (so this node never answers "whole" for it), its
//! blocks are fetched again from the other holders, and it is marked whole and verified again.
//!
//! It must not change pins (only replica rows are settled here), nor decide placement.

use std::sync::Arc;
use std::time::Duration;

use crate::content::BlockAddress;
use crate::node::fetch::begin_session;
use crate::node::fetch::transfer::{bring, Bring};
use crate::node::{blocking, now_secs, NodeError};
use crate::store::{Holding, SessionKind};

use super::{Replicator, ScrubReport, ScrubTotals};

impl Replicator {
    /// Totals of the background scrub.
    pub fn scrub_totals(&self) -> ScrubTotals {
        self.scrubbed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-checks every block of the replica `root` against its address at `rate` bytes/s
    /// (unbounded when `None`); blocks found corrupt are set aside and, with missing ones,
    /// fetched again from the other holders; the replica's `last_verified` is updated.
    pub async fn scrub_item(
        &self,
        root: BlockAddress,
        rate: Option<u64>,
    ) -> Result<ScrubReport, NodeError> {
        let session =
            begin_session(&self.store, SessionKind::Replica, format!("scrub {root}")).await?;
        let mut report = ScrubReport {
            root: root.to_string(),
            ..ScrubReport::default()
        };
        // A replica with bad or missing blocks is marked partial at once: until it is whole
        // again this node must not answer "whole" (a handoff elsewhere could count on it).
        // Blocks under a manifest that had to be fetched again are only reached on the next
        // pass, so up to three passes with a fetch between them.
        let mut marked_partial = false;
        let mut pass = 0;
        // A column holder checks and fetches again its own column only.
        let store = Arc::clone(&self.store);
        let shard = blocking(move || store.replica_of(&root))
            .await??
            .and_then(|r| r.shard);
        loop {
            let (store, s) = (Arc::clone(&self.store), Arc::clone(&session));
            let checked = blocking(move || {
                let mut pace = |n: u64| {
                    if let Some(rate) = rate.filter(|r| *r > 0) {
                        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                    }
                };
                store.check_item(&s, &root, shard.as_ref(), &mut pace)
            })
            .await??;
            report.checked_blocks += checked.checked_blocks;
            report.checked_bytes += checked.checked_bytes;
            if checked.lacking.is_empty() {
                break;
            }
            pass += 1;
            tracing::warn!(cid = %root, blocks = checked.lacking.len(), pass, "scrub found bad or missing blocks; fetching them again");
            if !marked_partial {
                self.settle_scrubbed(&session, root, false).await?;
                marked_partial = true;
            }
            let brought = if pass > 2 {
                Err(NodeError::Incomplete {
                    item: root.into(),
                    missing: checked.lacking.len(),
                    total: checked.lacking.len(),
                })
            } else {
                let what = Bring::copy(root, &|_| None, self.pace(None)).column(shard);
                bring(&self.client, &session, what).await
            };
            match brought {
                Ok(b) => {
                    report.repaired_blocks +=
                        (b.walked.new_manifests_count + b.pulled.blocks) as u64;
                }
                Err(e) => {
                    // Left partial, and counted as checked now: the scrub moves on to other
                    // replicas, and a repair round's `Hold` brings this one back.
                    self.settle_scrubbed(&session, root, false).await?;
                    return Err(e);
                }
            }
        }
        self.settle_scrubbed(&session, root, true).await?;
        let mut t = self.scrubbed.lock().unwrap_or_else(|e| e.into_inner());
        t.checked_bytes += report.checked_bytes;
        t.repaired_blocks += report.repaired_blocks;
        Ok(report)
    }

    /// Records a scrub's outcome on the replica `root`: whole (and verified now) or partial
    /// (verified now too, so the scrub does not come back to it first).
    async fn settle_scrubbed(
        &self,
        session: &Arc<crate::store::Session>,
        root: BlockAddress,
        whole: bool,
    ) -> Result<(), NodeError> {
        let store = Arc::clone(&self.store);
        let s = Arc::clone(session);
        blocking(move || -> Result<(), crate::store::StoreError> {
            if let Some(mut r) = store.replica_of(&root)? {
                r.complete = whole;
                r.last_verified = Some(now_secs());
                s.commit(&Holding::Replica(r))?;
            }
            Ok(())
        })
        .await??;
        Ok(())
    }

    /// Scrubs replicas one after another, the least recently verified first, at the
    /// configured rate, until the node stops.
    pub(crate) async fn scrub_loop(self) {
        let Some(rate) = self.cfg.scrub_rate.filter(|r| *r > 0) else {
            return;
        };
        loop {
            let store = Arc::clone(&self.store);
            let next = blocking(move || {
                store.replicas().ok().and_then(|v| {
                    v.into_iter()
                        .filter(|r| r.complete)
                        .min_by_key(|r| r.last_verified.unwrap_or(0))
                })
            })
            .await;
            let due = next.ok().flatten().filter(|r| {
                // Re-check a replica at most once an hour; otherwise wait for one to be due.
                r.last_verified
                    .is_none_or(|t| now_secs().saturating_sub(t) >= 3600)
            });
            match due {
                Some(r) => {
                    if let Err(e) = self.scrub_item(r.root, Some(rate)).await {
                        if matches!(e, NodeError::Stopped) {
                            return;
                        }
                        tracing::warn!(cid = %r.root, error = %e, "scrub failed");
                        self.scrubbed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .failed += 1;
                    }
                }
                None => {
                    if self.client.info().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    }
}
