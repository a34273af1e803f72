//! Keeping a data dir honest: garbage collection and verification.
//!
//! Both walk items through the public link lists of their manifest blocks
//! ([`manifest::parse_links`]), so they work without keys — the same walk will serve replicas
//! held for other people. This module must not open sealed bodies.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::content::manifest::{self, LinkKind, MAX_MANIFEST_BLOCK};
use crate::content::{BlockAddress, ContentId, MAX_BLOCK_SIZE};

use super::{Result, Store, StoreError};

/// What `gc` removed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub freed_bytes: u64,
    pub kept_blocks: u64,
}

/// What `verify` found.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checked_blocks: u64,
    pub checked_bytes: u64,
    /// Blocks whose bytes did not match their address; moved to `corrupt/`.
    pub corrupt: Vec<String>,
    /// Blocks the index named but whose file was gone.
    pub missing: Vec<String>,
    /// Complete block files the index did not name yet (left by a kill); now indexed.
    pub adopted: u64,
    /// Pinned items that can no longer be read in full: content ID → blocks they lack.
    pub damaged_items: Vec<(String, u64)>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.damaged_items.is_empty()
    }
}

/// The blocks reachable from `root`, and how many of them are not held.
pub(crate) struct Reach {
    pub present: HashSet<BlockAddress>,
    pub missing: Vec<BlockAddress>,
}

impl Store {
    /// Walks the item rooted at `root` through its manifests' public links.
    pub(crate) fn reach(&self, root: &BlockAddress) -> Result<Reach> {
        let mut present = HashSet::new();
        let mut missing = Vec::new();
        let mut stack = vec![(*root, LinkKind::Manifest)];
        while let Some((a, kind)) = stack.pop() {
            if present.contains(&a) {
                continue;
            }
            if !self.index.has_block(&a)? {
                missing.push(a);
                continue;
            }
            present.insert(a);
            if kind == LinkKind::Manifest {
                let block = match self.blocks.read(&a, MAX_MANIFEST_BLOCK) {
                    Ok(b) => b,
                    Err(StoreError::Missing { .. }) => {
                        present.remove(&a);
                        missing.push(a);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let links = manifest::parse_links(a, &block).map_err(|e| StoreError::Corrupt {
                    address: a,
                    path: self.blocks.path_of(&a),
                    reason: e.to_string(),
                })?;
                stack.extend(links.into_iter().map(|l| (l.address, l.kind)));
            }
        }
        Ok(Reach { present, missing })
    }

    /// Removes every block that no pinned root reaches.
    pub fn gc(&self) -> Result<GcReport> {
        let _exclusive = self.gc_lock.write().unwrap_or_else(|e| e.into_inner());
        let mut live = HashSet::new();
        for pin in self.index.pins()? {
            let Ok(id) = pin.id.parse::<ContentId>() else {
                continue;
            };
            live.extend(self.reach(&id.root)?.present);
        }
        let mut dead = Vec::new();
        let mut report = GcReport::default();
        let indexed: HashSet<BlockAddress> =
            self.index.blocks()?.into_iter().map(|(a, _)| a).collect();
        for &a in &indexed {
            if live.contains(&a) {
                report.kept_blocks += 1;
            } else {
                dead.push(a);
            }
        }
        // Unindexed files left by a killed writer are garbage too, unless something reaches them.
        for (a, _) in self.blocks.list()? {
            if !indexed.contains(&a) && !live.contains(&a) {
                self.blocks.remove(&a)?;
                report.removed_blocks += 1;
            }
        }
        // Drop from the index first: a crash between the two steps leaves an unindexed file
        // (collected next time), never an index entry without its file.
        report.freed_bytes = self.index.remove_blocks(&dead)?;
        for a in &dead {
            self.blocks.remove(a)?;
        }
        report.removed_blocks += dead.len() as u64;
        tracing::info!(
            removed = report.removed_blocks,
            bytes = report.freed_bytes,
            "gc finished"
        );
        Ok(report)
    }

    /// Re-hashes every block file, moves corrupt ones aside, and checks that every pinned item
    /// is still complete.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _exclusive = self.gc_lock.write().unwrap_or_else(|e| e.into_inner());
        let mut report = VerifyReport::default();
        let indexed: HashMap<BlockAddress, u64> = self.index.blocks()?.into_iter().collect();
        let on_disk = self.blocks.list()?;
        let mut seen = HashSet::new();
        let mut bad = Vec::new();
        let mut adopt = Vec::new();
        for (a, path) in on_disk {
            seen.insert(a);
            let ok = match self.blocks.read(&a, MAX_BLOCK_SIZE) {
                Ok(bytes) => {
                    report.checked_blocks += 1;
                    report.checked_bytes += bytes.len() as u64;
                    if a.matches(&bytes) {
                        if !indexed.contains_key(&a) {
                            adopt.push((a, bytes.len() as u64));
                        }
                        true
                    } else {
                        false
                    }
                }
                Err(StoreError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !ok {
                let moved = self.blocks.quarantine(&a)?;
                tracing::warn!(block = %a, path = %path.display(), moved = %moved.display(), "corrupt block moved aside");
                report.corrupt.push(a.to_string());
                bad.push(a);
            }
        }
        for a in indexed.keys() {
            if !seen.contains(a) {
                report.missing.push(a.to_string());
                bad.push(*a);
            }
        }
        self.index.remove_blocks(&bad)?;
        report.adopted = adopt.len() as u64;
        self.index.add_blocks(&adopt)?;
        for pin in self.index.pins()? {
            let Ok(id) = pin.id.parse::<ContentId>() else {
                continue;
            };
            let reach = self.reach(&id.root)?;
            if !reach.missing.is_empty() {
                report
                    .damaged_items
                    .push((pin.id.clone(), reach.missing.len() as u64));
            }
        }
        Ok(report)
    }
}
