//! The key space around a set of roots, mapped with a few DHT walks instead of one per root.
//!
//! Kademlia places an item's provider records and replicas on the k peers closest to its root.
//! Finding them with one walk per root costs tens of requests per root; a node holding 10,000
//! items cannot afford that every republish or repair round. But roots that share a long
//! prefix share their closest peers, so the map works by **region** (all keys under one
//! prefix of the 256-bit key space):
//!
//! - a walk toward any point of a region returns the k peers closest to it; if one of them lies
//!   *outside* the region (or fewer than k came back), every peer *inside* was among them —
//!   in XOR distance every key under a prefix is closer to its fellows than to anything outside
//!   — so the region is known completely. Otherwise it is dense: split it in two and walk each
//!   half.
//! - a region known completely with at least k peers holds the k closest peers of every root in
//!   it, so they are computed locally, exactly. A sparser region is widened to its parent (its
//!   sibling walked too) until it holds k peers.
//!
//! The first walk estimates the network's size from how far away its k-th peer lies, which
//! picks the starting prefix length: regions of about 2k peers. The cost is then a few walks per
//! 2k peers of the network, whatever the number of roots (DESIGN.md, "Republishing provider
//! records"). This module only maps; it must not send records or replicas.

use std::collections::{HashMap, HashSet};

use libp2p::{kad, PeerId};

use crate::content::BlockAddress;
use crate::network::{key_point, peer_point, provider_key};

use crate::node::{Client, NodeError};

/// A position in the DHT's 256-bit key space (SHA-256 of a record key or a peer ID).
type Point = [u8; 32];

/// Longest prefix for which a walk target is searched by hashing (2^(len+4) attempts at most);
/// regions this narrow only exist in networks of millions of peers.
const MAX_SEARCH_BITS: u16 = 22;

/// All keys whose first `len` bits are those of `bits` (the rest of `bits` is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Region {
    bits: Point,
    len: u16,
}

impl Region {
    fn of(p: &Point, len: u16) -> Region {
        let mut bits = [0u8; 32];
        let (whole, rest) = ((len / 8) as usize, len % 8);
        bits[..whole].copy_from_slice(&p[..whole]);
        if rest > 0 {
            bits[whole] = p[whole] & (0xff << (8 - rest));
        }
        Region { bits, len }
    }

    fn contains(&self, p: &Point) -> bool {
        Region::of(p, self.len).bits == self.bits
    }

    fn child(&self, one: bool) -> Region {
        let mut bits = self.bits;
        if one {
            bits[(self.len / 8) as usize] |= 0x80 >> (self.len % 8);
        }
        Region {
            bits,
            len: self.len + 1,
        }
    }

    fn parent(&self) -> Region {
        Region::of(&self.bits, self.len - 1)
    }

    fn sibling(&self) -> Region {
        let mut bits = self.bits;
        let bit = self.len - 1;
        bits[(bit / 8) as usize] ^= 0x80 >> (bit % 8);
        Region {
            bits,
            len: self.len,
        }
    }
}

fn distance(a: &Point, b: &Point) -> Point {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// Index of the highest set bit of a distance (255 = differs in the first bit).
fn highest_bit(d: &Point) -> Option<u16> {
    let i = d.iter().position(|b| *b != 0)?;
    Some(255 - (i as u16 * 8 + d[i].leading_zeros() as u16))
}

/// The live peers around a set of roots, from which each root's closest peers are computed.
#[derive(Debug, Default)]
pub struct KeyspaceMap {
    /// Per group of roots: every live peer of the (widened) region, with its point.
    groups: Vec<Vec<(PeerId, Point)>>,
    roots: HashMap<BlockAddress, (usize, Point)>,
    /// DHT walks made, and the requests they sent: the cost of the map.
    pub walks: u32,
    pub walk_requests: u64,
    /// Groups of roots (regions) the map was built from.
    pub regions: usize,
}

impl KeyspaceMap {
    /// Maps the key space around `roots` with as few walks as the network allows; `k` is the
    /// number of closest peers wanted per root (at most what one walk returns).
    pub async fn build(
        client: &Client,
        roots: &[BlockAddress],
        k: usize,
    ) -> Result<KeyspaceMap, NodeError> {
        let mut b = Builder {
            client,
            roots: roots.iter().map(|r| (key_point(r), *r)).collect(),
            known: HashMap::new(),
            memo: HashMap::new(),
            walks: 0,
            requests: 0,
            k,
        };
        b.roots.sort_unstable();
        b.roots.dedup();
        let mut map = KeyspaceMap::default();
        if b.roots.is_empty() {
            return Ok(map);
        }
        let start = b.first_prefix_len().await?;
        let mut i = 0;
        while i < b.roots.len() {
            let region = Region::of(&b.roots[i].0, start);
            let end = i + b.roots[i..].partition_point(|(p, _)| region.contains(p));
            let peers = b.enough_peers_for(region).await?;
            let group = map.groups.len();
            map.groups.push(
                peers
                    .into_iter()
                    .map(|p| {
                        (
                            p,
                            b.known.get(&p).copied().unwrap_or_else(|| peer_point(&p)),
                        )
                    })
                    .collect(),
            );
            for (point, root) in &b.roots[i..end] {
                map.roots.insert(*root, (group, *point));
            }
            i = end;
        }
        map.regions = map.groups.len();
        map.walks = b.walks;
        map.walk_requests = b.requests;
        Ok(map)
    }

    /// The `n` live peers closest to `root` (this node excluded), closest first; empty for a
    /// root the map was not built for.
    pub fn closest(&self, root: &BlockAddress, n: usize) -> Vec<PeerId> {
        let Some((group, point)) = self.roots.get(root) else {
            return Vec::new();
        };
        let mut peers: Vec<&(PeerId, Point)> = self.groups[*group].iter().collect();
        peers.sort_unstable_by_key(|(_, p)| distance(p, point));
        peers.into_iter().take(n).map(|(p, _)| *p).collect()
    }
}

struct Builder<'a> {
    client: &'a Client,
    roots: Vec<(Point, BlockAddress)>,
    known: HashMap<PeerId, Point>,
    /// Regions known completely: every live peer in them.
    memo: HashMap<Region, Vec<PeerId>>,
    walks: u32,
    requests: u64,
    k: usize,
}

impl Builder<'_> {
    /// The live peers closest to `target`. A walk that timed out says nothing about how many
    /// peers a region holds (its short list is not "fewer than k here"), so it is tried once
    /// more and, if that times out too, fails the map instead of describing a region wrong.
    async fn walk(&mut self, target: Vec<u8>) -> Result<Vec<PeerId>, NodeError> {
        let mut found = self.client.closest_to(target.clone()).await?;
        self.walks += 1;
        self.requests += u64::from(found.requests);
        if !found.complete {
            found = self.client.closest_to(target).await?;
            self.walks += 1;
            self.requests += u64::from(found.requests);
        }
        for p in &found.peers {
            self.known.entry(*p).or_insert_with(|| peer_point(p));
        }
        if !found.complete && found.peers.len() < self.k {
            return Err(NodeError::Request {
                peer: self.client.peer_id(),
                reason: "closest-peers walk timed out twice with fewer than k peers".into(),
            });
        }
        Ok(found.peers)
    }

    /// One walk toward the middle root; from how far its k-th peer lies, the prefix length of
    /// regions holding about 2k peers. A network smaller than k+1 is known whole at once.
    async fn first_prefix_len(&mut self) -> Result<u16, NodeError> {
        let (point, root) = self.roots[self.roots.len() / 2];
        let found = self.walk(provider_key(&root).to_vec()).await?;
        if found.len() < self.k {
            self.memo.insert(Region::of(&point, 0), found);
            return Ok(0);
        }
        let farthest = found
            .iter()
            .filter_map(|p| highest_bit(&distance(&self.known[p], &point)))
            .max()
            .unwrap_or(255);
        // k peers lie within 2^(farthest+1) of the point: a region of prefix length
        // 255 - farthest holds about k of them; one bit shorter, about 2k.
        Ok((255 - farthest).saturating_sub(1))
    }

    /// The peers of `region`, widened to its parent until there are at least k.
    async fn enough_peers_for(&mut self, mut region: Region) -> Result<Vec<PeerId>, NodeError> {
        let mut peers = self.enumerate(region).await?;
        while peers.len() < self.k && region.len > 0 {
            peers.extend(self.enumerate(region.sibling()).await?);
            region = region.parent();
            self.memo.insert(region, peers.clone());
        }
        Ok(peers)
    }

    /// Every live peer in `region`, walking it and, while it is dense, its halves.
    async fn enumerate(&mut self, region: Region) -> Result<Vec<PeerId>, NodeError> {
        if let Some(v) = self.memo.get(&region) {
            return Ok(v.clone());
        }
        let mut out: HashSet<PeerId> = HashSet::new();
        let mut pending = vec![region];
        while let Some(r) = pending.pop() {
            if let Some(v) = self.memo.get(&r) {
                out.extend(v.iter().copied());
                continue;
            }
            let target = match known_target_in(&self.roots, &self.known, &r) {
                Some(t) => Some(t),
                // Up to 2^26 hashes: not on an async thread the event loop may need.
                None => crate::node::blocking(move || searched_target_in(&r)).await?,
            };
            let Some(target) = target else {
                tracing::debug!(
                    prefix_bits = r.len,
                    "no walk target in a region; taken as empty"
                );
                continue;
            };
            let found = self.walk(target).await?;
            let inside: Vec<PeerId> = found
                .iter()
                .filter(|p| r.contains(&self.known[*p]))
                .copied()
                .collect();
            if found.len() < self.k || inside.len() < found.len() || r.len >= 255 {
                out.extend(inside.iter().copied());
                self.memo.insert(r, inside);
            } else {
                pending.push(r.child(false));
                pending.push(r.child(true));
            }
        }
        let v: Vec<PeerId> = out.into_iter().collect();
        self.memo.insert(region, v.clone());
        Ok(v)
    }
}

/// A key (as kad takes it, before hashing) whose point lies in `region`: a root there, a
/// known peer there, or failing both a searched-for preimage.
#[cfg(test)]
fn target_in(
    roots: &[(Point, BlockAddress)],
    known: &HashMap<PeerId, Point>,
    region: &Region,
) -> Option<Vec<u8>> {
    known_target_in(roots, known, region).or_else(|| searched_target_in(region))
}

/// A root or a known peer whose point lies in `region`, as a key kad takes.
fn known_target_in(
    roots: &[(Point, BlockAddress)],
    known: &HashMap<PeerId, Point>,
    region: &Region,
) -> Option<Vec<u8>> {
    let i = roots.partition_point(|(p, _)| *p < region.bits);
    if let Some((p, root)) = roots.get(i) {
        if region.contains(p) {
            return Some(provider_key(root).to_vec());
        }
    }
    known
        .iter()
        .find(|(_, p)| region.contains(p))
        .map(|(peer, _)| peer.to_bytes())
}

/// A preimage whose point lies in `region`, searched for by hashing (slow for narrow ones).
fn searched_target_in(region: &Region) -> Option<Vec<u8>> {
    if region.len > MAX_SEARCH_BITS {
        return None;
    }
    (0u64..1 << (region.len + 4)).find_map(|i| {
        let preimage = [b"storgo-region-".as_slice(), &i.to_be_bytes()].concat();
        let point = kad::KBucketKey::new(preimage.clone());
        let mut p = [0u8; 32];
        p.copy_from_slice(point.hashed_bytes());
        region.contains(&p).then_some(preimage)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_nest_and_split_the_key_space() {
        let p = [0b1011_0110; 32];
        let r = Region::of(&p, 3);
        assert_eq!(r.bits[0], 0b1010_0000);
        assert!(r.contains(&p));
        assert!(r.child(true).contains(&p) ^ r.child(false).contains(&p));
        assert_eq!(r.child(false).parent(), r);
        assert_eq!(r.child(true).sibling(), r.child(false));
        assert!(!r.sibling().contains(&p));
        assert!(Region::of(&p, 0).contains(&[0; 32]));
        let deep = Region::of(&p, 255);
        assert!(deep.contains(&p));
        assert_eq!(deep.child(true).len, 256);
    }

    #[test]
    fn highest_bit_is_the_distance_scale() {
        let mut d = [0u8; 32];
        assert_eq!(highest_bit(&d), None);
        d[31] = 1;
        assert_eq!(highest_bit(&d), Some(0));
        d[0] = 0x80;
        assert_eq!(highest_bit(&d), Some(255));
        d[0] = 0;
        d[1] = 0x10;
        assert_eq!(highest_bit(&d), Some(244));
    }

    #[test]
    fn a_searched_target_lands_in_its_region() {
        for bits in [[0u8; 32], [0xff; 32], [0x5a; 32]] {
            let r = Region::of(&bits, 10);
            let t = target_in(&[], &HashMap::new(), &r).expect("found");
            let key = kad::KBucketKey::new(t);
            let mut p = [0u8; 32];
            p.copy_from_slice(key.hashed_bytes());
            assert!(r.contains(&p));
        }
    }
}
