//! The event loop's answers to [`Command`]s from the rest of the node: each starts a query or
//! a request (remembered in the tables of `queries`, answered when its end comes back as a
//! swarm event) or is answered at once from what the loop knows. Nothing here waits: a command
//! that needs the disk is done by a blocking task the loop spawns.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{kad, PeerId};

use super::queries::Query;
use super::reputation::Ban;
use super::EventLoop;
use crate::network::provider_key;
use crate::node::{
    Bucket, BucketPeer, Command, Lookup, NodeError, NodeInfo, PeerInfo, ReachabilityInfo,
    RoutingTable,
};

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::StartProviding { root, done } => {
                match behaviour.kad.start_providing(provider_key(&root)) {
                    Ok(id) => {
                        if let Some(done) = done {
                            self.queries.insert(id, Query::Provide(done));
                        }
                    }
                    Err(e) => tracing::warn!(cid = %root, error = %e, "cannot provide"),
                }
            }
            Command::StopProviding { root } => behaviour.kad.stop_providing(&provider_key(&root)),
            Command::GetProviders { root, reply } => {
                let id = behaviour.kad.get_providers(provider_key(&root));
                self.queries.insert(
                    id,
                    Query::Providers {
                        found: reply,
                        seen: HashSet::new(),
                    },
                );
            }
            Command::FindProviders { root, reply } => {
                let id = behaviour.kad.get_providers(provider_key(&root));
                self.queries.insert(
                    id,
                    Query::Lookup {
                        lookup: Lookup::default(),
                        found: HashSet::new(),
                        reply,
                    },
                );
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.chunks.send_request(&peer, request);
                self.chunk_requests.insert(id, reply);
            }
            Command::Replicate {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.replicate.send_request(&peer, request);
                self.replicate_requests.insert(id, reply);
            }
            Command::RespondReplicate { channel, response } => {
                let _ = behaviour.replicate.send_response(channel, response);
            }
            Command::ClosestPeers { key, reply } => {
                let id = behaviour.kad.get_closest_peers(key);
                self.queries.insert(id, Query::Closest(reply));
            }
            Command::PutRecord { record, reply } => {
                match behaviour.kad.put_record(record, kad::Quorum::One) {
                    Ok(id) => {
                        self.queries.insert(id, Query::Put(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("{e:?}")));
                    }
                }
            }
            Command::GetRecord { key, found } => {
                let id = behaviour.kad.get_record(key);
                self.queries.insert(id, Query::Get(found));
            }
            Command::Subscribe { collection, on } => {
                let topic = crate::network::collection_topic(&collection);
                if on {
                    if let Err(e) = behaviour.gossip.subscribe(&topic) {
                        tracing::warn!(error = ?e, "cannot join a collection's topic");
                    }
                } else {
                    behaviour.gossip.unsubscribe(&topic);
                }
            }
            Command::Gossip {
                collection,
                data,
                reply,
            } => {
                let topic = crate::network::collection_topic(&collection);
                let r = behaviour.gossip.publish(topic, data);
                let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
            }
            Command::GossipVerdict {
                id,
                source,
                verdict,
            } => {
                behaviour
                    .gossip
                    .report_message_validation_result(&id, &source, verdict);
            }
            Command::Announce {
                peer,
                announcement,
                reply,
            } => {
                let id = behaviour.announce.send_request(&peer, announcement);
                self.announce_requests.insert(id, reply);
            }
            Command::Dial { addr, reply } => {
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(p)) => Some(p),
                    _ => None,
                };
                if let Some(p) = peer {
                    behaviour.kad.add_address(&p, addr.clone());
                    if self.swarm.is_connected(&p) {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                match (self.swarm.dial(addr.clone()), peer) {
                    (Err(e), _) => {
                        let _ = reply.send(Err(NodeError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                    (Ok(()), Some(p)) => self.dials.entry(p).or_default().push(reply),
                    (Ok(()), None) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Command::Report { peer, offence } => self.report(peer, offence),
            Command::Unban { peer, reply } => {
                let _ = reply.send(self.unban(peer));
            }
            Command::Debt { peer, reply } => {
                let _ = reply.send(self.reputation.debt(&peer));
            }
            Command::Banned { reply } => {
                let mut bans: Vec<Ban> = self.banned.values().cloned().collect();
                bans.sort_by_key(|b| b.until);
                let _ = reply.send(bans);
            }
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::NearbyPeers { reply } => {
                let mut peers: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                peers.extend(self.peers.seen_lately(Instant::now()));
                let _ = reply.send(peers.into_iter().collect());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::RoutingTable { reply } => {
                let _ = reply.send(self.routing_table());
            }
            Command::Shutdown => {}
        }
    }

    /// What `storgo status` shows of the network side.
    fn info(&mut self) -> NodeInfo {
        let routing_table_size = self.routing_table_size();
        let peer_id = self.swarm.local_peer_id().to_string();
        let connected_peers = self.swarm.connected_peers().count();
        let intake = Arc::clone(&self.record_intake.counters);
        let kad = &mut self.swarm.behaviour_mut().kad;
        let mode = kad.mode();
        let store = kad.store_mut();
        NodeInfo {
            peer_id,
            listen_addrs: self
                .listen_tx
                .borrow()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            connected_peers,
            routing_table_size,
            records_provided: store.provided_count(),
            provider_records_held: store.provider_rows(),
            records_taken_in: intake.stored.load(Ordering::Relaxed),
            records_refused: intake.refused.load(Ordering::Relaxed),
            records_dropped: intake.dropped.load(Ordering::Relaxed),
            bytes_served: self.counters.bytes_served.get(),
            bytes_fetched: self.counters.bytes_fetched.get(),
            connections_made: self.counters.connections_made.get(),
            dht_mode: format!("{mode:?}").to_lowercase(),
            reachability: self.reachability_info(),
            role: self.counters.role().unwrap_or_default().to_string(),
            background_tasks: self
                .counters
                .running_tasks()
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    /// Whether peers can reach this node, and how (`storgo status`, "Reachability").
    fn reachability_info(&self) -> ReachabilityInfo {
        ReachabilityInfo {
            status: self.reach.status().as_str().to_owned(),
            addresses: self
                .reach
                .direct_addresses()
                .map(|a| a.to_string())
                .collect(),
            relayed_addresses: self
                .reach
                .relayed_addresses()
                .map(|(a, _)| a.to_string())
                .collect(),
            relays: {
                let mut r: Vec<String> = self
                    .reach
                    .relayed_addresses()
                    .map(|(_, p)| p.to_string())
                    .collect();
                r.dedup();
                r
            },
            relay_service: self.relay_offered(),
            relay_reservations_served: self.relay_reservations_served,
        }
    }

    /// Whether this node's relay is offered now: it runs, and peers can reach it directly.
    fn relay_offered(&self) -> bool {
        self.swarm.behaviour().relay.is_enabled()
            && self.reach.status() == super::reach::Status::Public
    }

    /// The connected peers, as `storgo peers` lists them.
    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .swarm
            .connected_peers()
            .map(|p| PeerInfo {
                peer_id: p.to_string(),
                address: self
                    .peers
                    .remote_addr
                    .get(p)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                rtt_ms: self.peers.rtt.get(p).map(|d| d.as_secs_f64() * 1000.0),
                debt: self.reputation.debt(p),
                found_by: self
                    .peers
                    .found_by
                    .get(p)
                    .copied()
                    .unwrap_or("dht")
                    .to_owned(),
                via: self.reach.via(p).to_owned(),
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    fn routing_table(&mut self) -> RoutingTable {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let local_peer_id = self.swarm.local_peer_id().to_string();
        let mut buckets = Vec::new();
        for b in self.swarm.behaviour_mut().kad.kbuckets() {
            let index = b.range().0.ilog2().unwrap_or(0);
            let peers: Vec<BucketPeer> = b
                .iter()
                .map(|e| {
                    let peer = *e.node.key.preimage();
                    BucketPeer {
                        peer_id: peer.to_string(),
                        addresses: e.node.value.iter().map(|a| a.to_string()).collect(),
                        connected: connected.contains(&peer),
                    }
                })
                .collect();
            if !peers.is_empty() {
                buckets.push(Bucket { index, peers });
            }
        }
        buckets.sort_by_key(|b| b.index);
        RoutingTable {
            local_peer_id,
            buckets,
        }
    }
}
