//! What the node knows of other peers beyond kad's routing table: where each connected peer is
//! and how it was found, its round-trip time, the peers seen lately (asked first by a fetch),
//! the LAN peers mDNS announced, the backoff before redialling one that refused us, the
//! bootstrap peers' retry backoff, and the bans in force.
//!
//! [`PeerBook`] and [`Backoff`] are plain state, bounded and tested below; the `EventLoop`
//! methods here are the few that act on the Swarm for them (block a banned peer, dial the
//! bootstrap peers). Nothing here reads or writes the store on the loop: a ban is written by a
//! blocking task.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::reputation::{persisted, Offence};
use super::EventLoop;
use crate::node::now_secs;

/// How long a peer counts as "recently seen" for fetches.
const RECENT: Duration = Duration::from_secs(600);
/// Most recently seen peers remembered.
pub(super) const MAX_RECENT: usize = 256;
/// Longest wait between two attempts to reach an unreachable bootstrap peer.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait before redialling a peer that refused us at the handshake.
const MAX_REDIAL_WAIT: Duration = Duration::from_secs(3600);

/// The peers this node has met, bounded: a stream of mDNS announcements or of short-lived
/// peers cannot grow it without end.
#[derive(Default)]
pub(crate) struct PeerBook {
    pub rtt: HashMap<PeerId, Duration>,
    /// Peers seen lately (disconnected, or found by mDNS), asked first when fetching.
    recent: HashMap<PeerId, Instant>,
    pub remote_addr: HashMap<PeerId, Multiaddr>,
    /// How each connected peer was found (`PeerInfo::found_by`).
    pub found_by: HashMap<PeerId, &'static str>,
    /// Peers mDNS announced.
    on_lan: HashSet<PeerId>,
    /// Dials refused at the handshake per peer (how many in a row, the last one), for the
    /// redial backoff.
    refusals: HashMap<PeerId, (u32, Instant)>,
}

impl PeerBook {
    /// `peer` was seen at `now`; the oldest is forgotten when the book is full.
    pub(crate) fn remember(&mut self, peer: PeerId, now: Instant) {
        if self.recent.len() >= MAX_RECENT && !self.recent.contains_key(&peer) {
            if let Some(oldest) = self.recent.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p) {
                self.recent.remove(&oldest);
            }
        }
        self.recent.insert(peer, now);
    }

    /// The peers seen within the last ten minutes; older ones are forgotten.
    pub(crate) fn seen_lately(&mut self, now: Instant) -> impl Iterator<Item = PeerId> + '_ {
        let cutoff = now.checked_sub(RECENT);
        self.recent
            .retain(|_, seen| cutoff.is_none_or(|c| *seen > c));
        self.recent.keys().copied()
    }

    pub(crate) fn forget_recent(&mut self, peer: &PeerId) {
        self.recent.remove(peer);
    }

    /// mDNS announced `peer` on the LAN.
    pub(crate) fn found_on_lan(&mut self, peer: PeerId, now: Instant) {
        self.remember(peer, now);
        if self.on_lan.len() >= MAX_RECENT * 4 {
            self.on_lan.clear();
        }
        self.on_lan.insert(peer);
    }

    /// A connection to `peer` was made: it is reachable again, and how it was found is kept
    /// for as long as it stays connected.
    pub(crate) fn connected(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        bootstrap: bool,
        dialer: bool,
    ) {
        self.refusals.remove(&peer);
        self.remote_addr.insert(peer, addr);
        let found_by = if bootstrap {
            "bootstrap"
        } else if self.on_lan.contains(&peer) {
            "mdns"
        } else if dialer {
            "dht"
        } else {
            "inbound"
        };
        self.found_by.entry(peer).or_insert(found_by);
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: PeerId, now: Instant) {
        self.remote_addr.remove(&peer);
        self.found_by.remove(&peer);
        self.rtt.remove(&peer);
        self.remember(peer, now);
    }

    /// A dial to `peer` reached it and was refused (another private network, a ban there).
    pub(crate) fn refused(&mut self, peer: PeerId, now: Instant) {
        let n = self.refusals.get(&peer).map_or(0, |(n, _)| *n);
        if self.refusals.len() < MAX_RECENT * 4 || n > 0 {
            self.refusals.insert(peer, (n + 1, now));
        }
    }

    /// Whether dials to `peer` were refused lately: 1 min after the first refusal, doubling
    /// to 1 h.
    pub(crate) fn backing_off(&self, peer: &PeerId, now: Instant) -> bool {
        self.refusals.get(peer).is_some_and(|(n, at)| {
            let wait = Duration::from_secs(60 << (n - 1).min(6)).min(MAX_REDIAL_WAIT);
            now.saturating_duration_since(*at) < wait
        })
    }
}

/// The wait between attempts to reach the bootstrap peers: from one second, doubling to five
/// minutes while none answers, back to one second once one does.
pub(crate) struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            current: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// Another attempt failed: the next wait, doubled.
    pub(crate) fn grow(&mut self) -> Duration {
        self.current = (self.current * 2).min(MAX_BACKOFF);
        self.current
    }

    pub(crate) fn reset(&mut self) {
        self.current = Duration::from_secs(1);
    }
}

impl EventLoop {
    /// Books an offence; a peer that passes the threshold is disconnected, refused and its
    /// ban written to the store (off the loop).
    pub(super) fn report(&mut self, peer: PeerId, offence: Offence) {
        tracing::debug!(peer = %peer, offence = ?offence, "offence");
        let Some(ban) = self.reputation.report(peer, offence, now_secs()) else {
            return;
        };
        tracing::warn!(peer = %peer, reason = %ban.reason, until = ban.until, bans = ban.count, "peer banned");
        let behaviour = self.swarm.behaviour_mut();
        behaviour.blocked.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        self.peers.forget_recent(&peer);
        let store = Arc::clone(&self.store);
        let row = ban.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = persisted::save(&store, &peer, &row) {
                tracing::warn!(peer = %peer, error = %e, "cannot write the ban to the store");
            }
        });
        self.banned.insert(peer, ban);
    }

    pub(super) fn lift_ended_bans(&mut self) {
        let now = now_secs();
        let ended: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in ended {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(peer = %peer, "ban ended");
        }
    }

    pub(super) fn unban(&mut self, peer: PeerId) -> bool {
        let was = self.banned.remove(&peer).is_some();
        self.reputation.forgive(&peer);
        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = persisted::remove(&store, &peer, now_secs()) {
                tracing::warn!(peer = %peer, error = %e, "cannot remove the ban from the store");
            }
        });
        tracing::info!(peer = %peer, "unbanned");
        was
    }

    pub(super) fn bootstrap_connected(&self) -> bool {
        self.bootstrap.iter().any(|a| match a.iter().last() {
            Some(Protocol::P2p(p)) => self.swarm.is_connected(&p),
            // An address without a PeerId (a container's fixed address): connected if some
            // connection goes there.
            _ => self.peers.remote_addr.values().any(|r| r == a),
        })
    }

    pub(super) fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    /// Whether a connection to `peer` at `remote` is one to a bootstrap peer.
    pub(super) fn is_bootstrap(&self, peer: &PeerId, remote: &Multiaddr, dialer: bool) -> bool {
        self.bootstrap.iter().any(|a| match a.iter().last() {
            Some(Protocol::P2p(p)) => p == *peer,
            _ => dialer && a == remote,
        })
    }
}

/// Whether a dial reached the peer and was refused there (another private network's key, a
/// failed Noise handshake, the wrong PeerId, a block list) rather than failing to reach it: a
/// peer that is down or cut off must be redialled as soon as it is seen again, one that
/// refuses would only refuse again.
pub(super) fn refused_at_handshake(error: &libp2p::swarm::DialError) -> bool {
    use libp2p::swarm::DialError;
    use libp2p::TransportError;
    use std::io::ErrorKind::*;
    match error {
        DialError::WrongPeerId { .. } | DialError::Denied { .. } => true,
        DialError::Transport(errors) => {
            !errors.is_empty()
                && errors.iter().all(|(_, e)| match e {
                    TransportError::Other(io) => !matches!(
                        io.kind(),
                        ConnectionRefused
                            | ConnectionReset
                            | ConnectionAborted
                            | TimedOut
                            | HostUnreachable
                            | NetworkUnreachable
                            | AddrNotAvailable
                            | NotConnected
                    ),
                    TransportError::MultiaddrNotSupported(_) => false,
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_of_recent_peers_is_bounded_and_forgets_the_oldest() {
        let mut book = PeerBook::default();
        let start = Instant::now();
        let first = PeerId::random();
        book.remember(first, start);
        for i in 1..MAX_RECENT as u64 {
            book.remember(PeerId::random(), start + Duration::from_millis(i));
        }
        assert_eq!(book.seen_lately(start).count(), MAX_RECENT);
        // Seen again: refreshed, not a second entry.
        book.remember(first, start + Duration::from_secs(1));
        assert_eq!(book.seen_lately(start).count(), MAX_RECENT);
        let newcomer = PeerId::random();
        book.remember(newcomer, start + Duration::from_secs(2));
        let lately: HashSet<PeerId> = book.seen_lately(start).collect();
        assert_eq!(lately.len(), MAX_RECENT);
        assert!(lately.contains(&newcomer) && lately.contains(&first));
    }

    #[test]
    fn peers_not_seen_for_ten_minutes_are_not_offered_to_fetches() {
        let mut book = PeerBook::default();
        let start = Instant::now();
        let (old, fresh) = (PeerId::random(), PeerId::random());
        book.remember(old, start);
        book.remember(fresh, start + Duration::from_secs(300));
        let later = start + Duration::from_secs(601);
        let lately: Vec<PeerId> = book.seen_lately(later).collect();
        assert_eq!(lately, vec![fresh]);
    }

    #[test]
    fn a_peer_that_refuses_is_redialled_after_a_doubling_wait_up_to_an_hour() {
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert!(!book.backing_off(&peer, t0));
        let mut at = t0;
        for n in 1..=9u32 {
            book.refused(peer, at);
            let wait = Duration::from_secs(60 << (n - 1).min(6)).min(MAX_REDIAL_WAIT);
            assert!(
                book.backing_off(&peer, at + wait - Duration::from_secs(1)),
                "refusal {n}"
            );
            assert!(!book.backing_off(&peer, at + wait), "refusal {n}");
            at += wait;
        }
        // A connection clears it.
        book.connected(peer, Multiaddr::empty(), false, true);
        book.refused(peer, at);
        assert!(!book.backing_off(&peer, at + Duration::from_secs(60)));
    }

    #[test]
    fn how_a_peer_was_found_is_kept_while_it_stays_connected() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        let (lan, boot, dialled, came) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        book.found_on_lan(lan, now);
        book.connected(lan, Multiaddr::empty(), false, true);
        book.connected(boot, Multiaddr::empty(), true, true);
        book.connected(dialled, Multiaddr::empty(), false, true);
        book.connected(came, Multiaddr::empty(), false, false);
        book.connected(came, Multiaddr::empty(), true, true);
        let by = |p| book.found_by.get(&p).copied();
        assert_eq!(by(lan), Some("mdns"));
        assert_eq!(by(boot), Some("bootstrap"));
        assert_eq!(by(dialled), Some("dht"));
        assert_eq!(by(came), Some("inbound"), "the first connection says");
        book.disconnected(came, now);
        assert_eq!(book.found_by.get(&came), None);
        assert!(
            book.seen_lately(now).any(|p| p == came),
            "a peer that left is asked first"
        );
    }

    #[test]
    fn the_bootstrap_backoff_doubles_to_five_minutes_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.current(), Duration::from_secs(1));
        let waits: Vec<u64> = (0..10).map(|_| b.grow().as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.reset();
        assert_eq!(b.current(), Duration::from_secs(1));
    }
}
