//! What this node has asked the network and not yet heard the end of, and who waits for each
//! answer: one table of DHT queries keyed by kad's `QueryId` with an enum saying what each is
//! for (as kad's own `QueryPool<QueryInner>`), and one table of outbound requests per
//! request-response protocol.
//!
//! The tables decide what a query's progress means for its caller — a provider passed on, a
//! lookup finished, a record found — and tell the event loop what to do with the Swarm (dial a
//! provider, finish a query). They never touch the Swarm themselves, so they are plain state
//! machines, tested below without a network.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{kad, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::node::{Closest, Lookup, NodeError, MAX_PROVIDERS_PER_LOOKUP};

/// One DHT query in flight, by what it is for.
pub(crate) enum Query {
    /// Our provider record going out; `done` is told when the query ends.
    Provide(oneshot::Sender<()>),
    /// Providers streamed to a fetch as they are found (each peer once).
    Providers {
        found: mpsc::UnboundedSender<PeerId>,
        seen: HashSet<PeerId>,
    },
    /// A whole provider lookup measured, answered when it ends (`storgo providers`).
    Lookup {
        lookup: Lookup,
        found: HashSet<PeerId>,
        reply: oneshot::Sender<Lookup>,
    },
    /// The peers closest to a key.
    Closest(oneshot::Sender<Closest>),
    /// A value record stored on the peers closest to its key.
    Put(oneshot::Sender<Result<(), String>>),
    /// Value records passed on as they are found.
    Get(mpsc::Sender<Vec<u8>>),
}

/// The cost of a query so far, as kad's `QueryStats` reports it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub duration: Option<Duration>,
    pub requests: u32,
    pub successes: u32,
}

impl From<&kad::QueryStats> for Cost {
    fn from(s: &kad::QueryStats) -> Self {
        Self {
            duration: s.duration(),
            requests: s.num_requests(),
            successes: s.num_successes(),
        }
    }
}

/// What the event loop must do after a step of a query.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Next {
    /// Providers to dial now: kad keeps a provider's addresses only while the query runs.
    pub dial: Vec<PeerId>,
    /// Whether to stop the query in kad: its caller has what it wanted or has gone.
    pub finish: bool,
}

/// The DHT queries in flight. `Id` is kad's `QueryId` in the node (any key in tests: kad's
/// cannot be made outside it).
pub(crate) struct Queries<Id = kad::QueryId> {
    pending: HashMap<Id, Query>,
}

impl<Id> Default for Queries<Id> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
        }
    }
}

impl<Id: Hash + Eq + Copy> Queries<Id> {
    pub(crate) fn insert(&mut self, id: Id, query: Query) {
        self.pending.insert(id, query);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }

    /// One step of query `id`: its result so far, its cost, whether it is the last step.
    /// `wanted` says whether a provider may be passed on (not this node, not a banned peer).
    pub(crate) fn progress(
        &mut self,
        id: Id,
        result: kad::QueryResult,
        cost: Cost,
        last: bool,
        wanted: impl Fn(&PeerId) -> bool,
    ) -> Next {
        let mut next = Next::default();
        let mut done = last;
        match (self.pending.get_mut(&id), result) {
            (None, _) => return next,
            (
                Some(Query::Lookup { lookup, found, .. }),
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })),
            ) => {
                if found.is_empty() && !providers.is_empty() {
                    // A record in this node's own store comes before any request is sent (and
                    // before the query's clock starts).
                    lookup.first_provider_ms =
                        Some(cost.duration.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0));
                    lookup.requests_to_first = Some(cost.requests);
                }
                found.extend(providers);
            }
            (
                Some(Query::Providers { found, seen }),
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })),
            ) => {
                for p in providers {
                    if seen.len() >= MAX_PROVIDERS_PER_LOOKUP {
                        next.finish = true;
                        break;
                    }
                    if wanted(&p) && seen.insert(p) {
                        next.dial.push(p);
                        if found.send(p).is_err() {
                            next.finish = true;
                        }
                    }
                }
                done |= next.finish;
            }
            (Some(Query::Get(found)), kad::QueryResult::GetRecord(Ok(ok))) => {
                if let kad::GetRecordOk::FoundRecord(r) = ok {
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        found.try_send(r.record.value)
                    {
                        next.finish = true;
                        done = true;
                    }
                }
            }
            (Some(Query::Closest(_)), kad::QueryResult::GetClosestPeers(r)) => {
                let (peers, complete) = match r {
                    Ok(ok) => (ok.peers, true),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, false),
                };
                if let Some(Query::Closest(reply)) = self.pending.remove(&id) {
                    let _ = reply.send(Closest {
                        peers: peers.into_iter().map(|p| p.peer_id).collect(),
                        requests: cost.requests,
                        complete,
                    });
                }
            }
            (Some(Query::Put(_)), kad::QueryResult::PutRecord(r)) => {
                if let Some(Query::Put(reply)) = self.pending.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
            (Some(_), _) => {}
        }
        if done {
            self.end(id, cost);
        }
        next
    }

    /// The query has ended: whoever waits for its end is told.
    fn end(&mut self, id: Id, cost: Cost) {
        match self.pending.remove(&id) {
            Some(Query::Provide(done)) => {
                let _ = done.send(());
            }
            Some(Query::Lookup {
                mut lookup,
                found,
                reply,
            }) => {
                lookup.providers = found.iter().map(|p| p.to_string()).collect();
                lookup.duration_ms = cost.duration.map(|d| d.as_millis() as u64).unwrap_or(0);
                lookup.requests = cost.requests;
                lookup.successes = cost.successes;
                let _ = reply.send(lookup);
            }
            // A closest-peers or put query without its result: the caller sees the reply
            // dropped. Streams end when their sender goes.
            _ => {}
        }
    }
}

/// The outbound requests of one request-response protocol in flight, and who waits for each
/// answer.
pub(crate) struct Requests<Resp> {
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, NodeError>>>,
    protocol: &'static str,
}

impl<Resp> Requests<Resp> {
    pub(crate) fn new(protocol: &'static str) -> Self {
        Self {
            pending: HashMap::new(),
            protocol,
        }
    }

    pub(crate) fn insert(
        &mut self,
        id: OutboundRequestId,
        reply: oneshot::Sender<Result<Resp, NodeError>>,
    ) {
        self.pending.insert(id, reply);
    }

    /// What every request-response protocol handles alike: an answer to one of our requests
    /// goes to the caller waiting for it, an outbound failure fails that caller, an inbound
    /// failure is logged. An inbound request is returned for the protocol's own handler.
    /// `relay_carrying` says whether a connection ran through a relay: a request cut off with
    /// such a connection fails as [`NodeError::RelayClosed`] (the relay's limits, not the
    /// peer, ended it), or as [`NodeError::Rerouted`] when this node closed it for a punched
    /// direct connection.
    pub(crate) fn route<Req>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        relay_carrying: impl Fn(libp2p::swarm::ConnectionId) -> Option<super::reach::Circuit>,
    ) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => return Some((peer, request, channel)),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                connection_id,
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let cut = matches!(
                        error,
                        request_response::OutboundFailure::ConnectionClosed
                            | request_response::OutboundFailure::Io(_)
                    );
                    let e = match relay_carrying(connection_id) {
                        Some(c) if cut && c.replaced => NodeError::Rerouted { peer },
                        Some(c) if cut => NodeError::RelayClosed {
                            peer,
                            relay: c.relay.map(Box::new),
                        },
                        _ => NodeError::Request {
                            peer,
                            reason: error.to_string(),
                        },
                    };
                    let _ = reply.send(Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                let protocol = self.protocol;
                tracing::debug!(peer = %peer, error = %error, protocol, "inbound request failed");
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(providers: &[PeerId]) -> kad::QueryResult {
        kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
            key: kad::RecordKey::new(b"root"),
            providers: providers.iter().copied().collect(),
        }))
    }

    fn cost(ms: u64, requests: u32) -> Cost {
        Cost {
            duration: Some(Duration::from_millis(ms)),
            requests,
            successes: requests,
        }
    }

    #[test]
    fn providers_reach_the_fetch_once_each_and_only_the_wanted_ones() {
        let mut q: Queries<u32> = Queries::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        q.insert(
            1,
            Query::Providers {
                found: tx,
                seen: HashSet::new(),
            },
        );
        let (a, b, banned) = (PeerId::random(), PeerId::random(), PeerId::random());
        let next = q.progress(1, found(&[a, banned]), cost(5, 1), false, |p| *p != banned);
        assert_eq!(next.dial, vec![a]);
        assert!(!next.finish);
        let next = q.progress(1, found(&[a, b]), cost(9, 2), false, |p| *p != banned);
        assert_eq!(next.dial, vec![b], "a was passed on already");
        assert_eq!(rx.try_recv().ok(), Some(a));
        assert_eq!(rx.try_recv().ok(), Some(b));
        assert!(rx.try_recv().is_err());
        q.progress(1, found(&[]), cost(9, 2), true, |_| true);
        assert_eq!(q.len(), 0, "the last step ends the query");
        assert!(
            matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)),
            "the fetch sees the stream end"
        );
    }

    #[test]
    fn a_fetch_that_has_gone_or_has_enough_finishes_its_query() {
        let mut q: Queries<u32> = Queries::default();
        let (tx, rx) = mpsc::unbounded_channel();
        q.insert(
            1,
            Query::Providers {
                found: tx,
                seen: HashSet::new(),
            },
        );
        drop(rx);
        let next = q.progress(1, found(&[PeerId::random()]), cost(1, 1), false, |_| true);
        assert!(next.finish);
        assert_eq!(q.len(), 0);

        let (tx, _rx) = mpsc::unbounded_channel();
        q.insert(
            2,
            Query::Providers {
                found: tx,
                seen: HashSet::new(),
            },
        );
        let many: Vec<PeerId> = (0..MAX_PROVIDERS_PER_LOOKUP + 5)
            .map(|_| PeerId::random())
            .collect();
        let next = q.progress(2, found(&many), cost(1, 1), false, |_| true);
        assert_eq!(next.dial.len(), MAX_PROVIDERS_PER_LOOKUP);
        assert!(next.finish, "no more than the bound per search");
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_lookup_is_answered_at_its_end_with_the_cost_of_the_first_provider() {
        let mut q: Queries<u32> = Queries::default();
        let (reply, mut answer) = oneshot::channel();
        q.insert(
            7,
            Query::Lookup {
                lookup: Lookup::default(),
                found: HashSet::new(),
                reply,
            },
        );
        let (a, b) = (PeerId::random(), PeerId::random());
        q.progress(7, found(&[]), cost(3, 1), false, |_| true);
        q.progress(7, found(&[a]), cost(40, 3), false, |_| true);
        q.progress(7, found(&[b]), cost(80, 5), false, |_| true);
        assert!(answer.try_recv().is_err(), "not before the end");
        q.progress(7, found(&[]), cost(120, 8), true, |_| true);
        let lookup = answer.try_recv().expect("answered at the end");
        assert_eq!(lookup.first_provider_ms, Some(40.0));
        assert_eq!(lookup.requests_to_first, Some(3));
        assert_eq!(lookup.requests, 8);
        assert_eq!(lookup.duration_ms, 120);
        let mut providers = lookup.providers.clone();
        providers.sort();
        let mut want = vec![a.to_string(), b.to_string()];
        want.sort();
        assert_eq!(providers, want);
    }

    #[test]
    fn closest_put_and_provide_are_answered_and_forgotten() {
        let mut q: Queries<u32> = Queries::default();
        let (reply, mut closest) = oneshot::channel();
        q.insert(1, Query::Closest(reply));
        let peer = PeerId::random();
        let timed_out =
            kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                key: vec![1],
                peers: vec![kad::PeerInfo {
                    peer_id: peer,
                    addrs: vec![],
                }],
            }));
        q.progress(1, timed_out, cost(1, 4), true, |_| true);
        let c = closest.try_recv().expect("answered");
        assert_eq!(c.peers, vec![peer]);
        assert!(!c.complete, "a timed-out walk is not taken as complete");
        assert_eq!(c.requests, 4);

        let (reply, mut put) = oneshot::channel();
        q.insert(2, Query::Put(reply));
        let ok = kad::QueryResult::PutRecord(Ok(kad::PutRecordOk {
            key: kad::RecordKey::new(b"k"),
        }));
        q.progress(2, ok, cost(1, 1), true, |_| true);
        assert_eq!(put.try_recv().expect("answered"), Ok(()));

        let (done, mut provided) = oneshot::channel();
        q.insert(3, Query::Provide(done));
        let step = kad::QueryResult::StartProviding(Ok(kad::AddProviderOk {
            key: kad::RecordKey::new(b"k"),
        }));
        q.progress(3, step, cost(1, 1), false, |_| true);
        assert!(provided.try_recv().is_err(), "only at the end");
        let step = kad::QueryResult::StartProviding(Ok(kad::AddProviderOk {
            key: kad::RecordKey::new(b"k"),
        }));
        q.progress(3, step, cost(1, 1), true, |_| true);
        assert!(provided.try_recv().is_ok());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn records_are_passed_on_until_the_reader_goes() {
        let mut q: Queries<u32> = Queries::default();
        let (tx, mut rx) = mpsc::channel(4);
        q.insert(1, Query::Get(tx));
        let record = |v: &[u8]| {
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(kad::PeerRecord {
                peer: None,
                record: kad::Record::new(kad::RecordKey::new(b"k"), v.to_vec()),
            })))
        };
        assert_eq!(
            q.progress(1, record(b"v1"), cost(1, 1), false, |_| true),
            Next::default()
        );
        assert_eq!(rx.try_recv().ok(), Some(b"v1".to_vec()));
        drop(rx);
        let next = q.progress(1, record(b"v2"), cost(1, 1), false, |_| true);
        assert!(next.finish);
        assert_eq!(q.len(), 0);
        // A step of a query nobody waits for is nothing to do.
        assert_eq!(
            q.progress(1, record(b"v3"), cost(1, 1), true, |_| true),
            Next::default()
        );
    }
}
