//! What this node holds against its peers: offences cost score, and a peer whose debt passes
//! the threshold is banned for a while.
//!
//! Offences are reported by whoever sees them — the fetch's workers (a block that does not
//! match its address, a provider that does not hold what it claims, one that stops answering)
//! and the event loop (a malformed request or response). Debt decays with time, so an honest
//! peer with a flaky disk or link recovers; a peer that keeps misbehaving crosses the
//! threshold and is disconnected and refused for [`Limits::ban_for`], doubled for each earlier
//! ban still remembered. This module only keeps the books: the event loop applies a ban to the
//! Swarm and the store persists it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Something a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Sent a block that does not hash to its address (or is longer than the manifest says).
    BadBlock,
    /// Sent a message that does not decode or is over a limit.
    Malformed,
    /// Claimed an item (a provider record) and answered "not found" for its blocks. Costs
    /// standing, but on its own never more than half the way to a ban: stale records are normal.
    ClaimedButMissing,
    /// Stopped answering requests (timeouts, reset streams). Costs standing, but on its own
    /// never more than half the way to a ban.
    Silent,
}

impl Offence {
    /// Debt it adds: a bad block is the worst (it is either an attack or a rotting disk).
    pub fn cost(self) -> f64 {
        match self {
            Offence::BadBlock => 60.0,
            Offence::Malformed => 25.0,
            Offence::ClaimedButMissing => 25.0,
            Offence::Silent => 10.0,
        }
    }

    /// Whether honest peers do it too (see [`Reputation::report`]): it never bans alone.
    pub fn is_soft(self) -> bool {
        matches!(self, Offence::Silent | Offence::ClaimedButMissing)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Offence::BadBlock => "sent blocks that do not match their address",
            Offence::Malformed => "sent malformed or over-limit messages",
            Offence::ClaimedButMissing => "claimed items whose blocks it does not hold",
            Offence::Silent => "stopped answering",
        }
    }
}

/// When debt becomes a ban, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Debt at which a peer is banned.
    pub threshold: f64,
    /// Debt forgiven per hour.
    pub forgiven_per_hour: f64,
    /// Length of a first ban.
    pub ban_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Two bad blocks within ~20 minutes, or four malformed messages within the hour;
            // silence and false claims count, but only towards the rest.
            threshold: 100.0,
            forgiven_per_hour: 50.0,
            ban_for: Duration::from_secs(3600),
        }
    }
}

/// A ban, as the store keeps it and `storgo peers --banned` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ban {
    pub peer: String,
    /// Unix seconds when the ban ends.
    pub until: u64,
    pub reason: String,
    /// Bans this peer has had, this one included.
    pub count: u32,
}

struct Debt {
    amount: f64,
    at: Instant,
}

/// The books: debt per peer and how many times each was banned.
pub struct Reputation {
    limits: Limits,
    debts: HashMap<PeerId, Debt>,
    bans: HashMap<PeerId, u32>,
}

/// Peers whose debt is remembered, at most (the least indebted are forgotten first).
const MAX_TRACKED: usize = 4096;

impl Reputation {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            debts: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// Remembers that `peer` was banned `count` times (bans read back at start).
    pub fn remember_ban(&mut self, peer: PeerId, count: u32) {
        self.bans.insert(peer, count);
    }

    /// The peer's current debt.
    pub fn debt(&self, peer: &PeerId) -> f64 {
        self.debts
            .get(peer)
            .map_or(0.0, |d| self.decayed(d, Instant::now()))
    }

    fn decayed(&self, d: &Debt, now: Instant) -> f64 {
        let hours = now.saturating_duration_since(d.at).as_secs_f64() / 3600.0;
        (d.amount - hours * self.limits.forgiven_per_hour).max(0.0)
    }

    /// Books `offence` against `peer`; returns the ban to impose when its debt passes the
    /// threshold (`now_secs`: the wall clock, for the ban's end).
    pub fn report(&mut self, peer: PeerId, offence: Offence, now_secs: u64) -> Option<Ban> {
        let now = Instant::now();
        let before = self.debts.get(&peer).map_or(0.0, |d| self.decayed(d, now));
        let mut amount = before + offence.cost();
        if offence.is_soft() {
            // What an honest peer also does: silence is what a partition, a closed laptop lid
            // or a bad link looks like, and "not found" under a provider record is what a peer
            // that has since dropped or collected the item answers (its records live on until
            // they expire). They lower a peer's standing but never ban it on their own —
            // banning every peer across a healed partition kept a test network split.
            amount = amount.min(before.max(self.limits.threshold / 2.0));
        }
        if amount < self.limits.threshold {
            if self.debts.len() >= MAX_TRACKED && !self.debts.contains_key(&peer) {
                self.forget_least();
            }
            self.debts.insert(peer, Debt { amount, at: now });
            return None;
        }
        self.debts.remove(&peer);
        let count = self.bans.get(&peer).copied().unwrap_or(0) + 1;
        self.bans.insert(peer, count);
        // Repeat offenders wait longer: 1 h, 2 h, 4 h, … at most 64 times the first.
        let factor = 1u64 << (count - 1).min(6);
        Some(Ban {
            peer: peer.to_string(),
            until: now_secs + self.limits.ban_for.as_secs() * factor,
            reason: offence.describe().into(),
            count,
        })
    }

    /// Clears a peer's debt (after `storgo unban`).
    pub fn forgive(&mut self, peer: &PeerId) {
        self.debts.remove(peer);
    }

    fn forget_least(&mut self) {
        let now = Instant::now();
        if let Some(p) = self
            .debts
            .iter()
            .min_by(|a, b| self.decayed(a.1, now).total_cmp(&self.decayed(b.1, now)))
            .map(|(p, _)| *p)
        {
            self.debts.remove(&p);
        }
    }
}

/// Bans as the store keeps them (table `peer_bans`: PeerId bytes → CBOR [`Ban`]). Ended bans
/// stay, so that a repeat offender's next ban is longer; they are forgotten after 30 days.
pub mod persisted {
    use super::*;
    use crate::store::{DhtTable, Store, StoreError};

    const FORGET_AFTER_SECS: u64 = 30 * 24 * 3600;

    /// Every ban remembered, ended ones included; those ended more than 30 days ago are removed.
    pub fn load(store: &Store, now_secs: u64) -> Result<Vec<(PeerId, Ban)>, StoreError> {
        let mut out = Vec::new();
        let mut old = Vec::new();
        for (k, v) in store.dht().dht_scan(DhtTable::Bans, &[], usize::MAX)? {
            let (Ok(peer), Ok(ban)) = (
                PeerId::from_bytes(&k),
                ciborium::from_reader::<Ban, _>(&v[..]),
            ) else {
                old.push(k);
                continue;
            };
            if ban.until + FORGET_AFTER_SECS < now_secs {
                old.push(k);
            } else {
                out.push((peer, ban));
            }
        }
        if !old.is_empty() {
            let old: Vec<&[u8]> = old.iter().map(|k| k.as_slice()).collect();
            store.dht().dht_apply(DhtTable::Bans, &[], &old)?;
        }
        Ok(out)
    }

    pub fn save(store: &Store, peer: &PeerId, ban: &Ban) -> Result<(), StoreError> {
        let mut row = Vec::new();
        // Serialising a plain struct into a Vec cannot fail.
        let _ = ciborium::into_writer(ban, &mut row);
        store
            .dht()
            .dht_apply(DhtTable::Bans, &[(&peer.to_bytes(), &row)], &[])
    }

    /// Removes `peer`'s ban; true when there was one still in force.
    pub fn remove(store: &Store, peer: &PeerId, now_secs: u64) -> Result<bool, StoreError> {
        let key = peer.to_bytes();
        let active = store
            .dht()
            .dht_get(DhtTable::Bans, &key)?
            .and_then(|v| ciborium::from_reader::<Ban, _>(&v[..]).ok())
            .is_some_and(|b| b.until > now_secs);
        store.dht().dht_apply(DhtTable::Bans, &[], &[&key])?;
        Ok(active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_builds_to_a_ban_and_repeat_bans_last_longer() {
        let mut r = Reputation::new(Limits::default());
        let (liar, other) = (PeerId::random(), PeerId::random());
        assert_eq!(r.report(liar, Offence::BadBlock, 1000), None);
        assert_eq!(r.report(other, Offence::Silent, 1000), None);
        let ban = r
            .report(liar, Offence::BadBlock, 1000)
            .expect("two bad blocks ban");
        assert_eq!(ban.until, 1000 + 3600);
        assert_eq!(ban.count, 1);
        assert_eq!(r.debt(&liar), 0.0, "a ban settles the debt");
        assert!(
            (r.debt(&other) - 10.0).abs() < 0.01,
            "other peers are not affected"
        );
        r.report(liar, Offence::BadBlock, 5000);
        let again = r.report(liar, Offence::BadBlock, 5000).unwrap();
        assert_eq!((again.count, again.until), (2, 5000 + 7200));
    }

    #[test]
    fn silence_and_stale_claims_alone_never_ban() {
        let mut r = Reputation::new(Limits::default());
        let p = PeerId::random();
        for _ in 0..100 {
            assert_eq!(r.report(p, Offence::Silent, 0), None);
            assert_eq!(r.report(p, Offence::ClaimedButMissing, 0), None);
        }
        assert!(r.debt(&p) <= 50.0);
        r.report(p, Offence::BadBlock, 0)
            .expect("silence and a bad block do");
    }

    #[test]
    fn debt_is_forgiven_with_time() {
        let mut r = Reputation::new(Limits::default());
        let p = PeerId::random();
        r.report(p, Offence::Malformed, 0);
        r.debts.get_mut(&p).unwrap().at = Instant::now() - Duration::from_secs(1800);
        assert!(
            (r.debt(&p) - 0.0).abs() < 1e-9,
            "25 of debt, 25 forgiven in half an hour"
        );
    }
}
