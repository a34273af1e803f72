//! Requests peers send this node, routed off the loop: chunk requests to the serving pool,
//! replicate requests to the replica service, provider records and announcements to the
//! record intake, gossiped collection records to the collections service. What can be
//! answered without the disk (a malformed request, a full queue, a stopping node) is answered
//! here at once; everything else comes back later as an [`Answer`] or a command.

use std::sync::atomic::Ordering;

use libp2p::request_response::{self, ResponseChannel};
use libp2p::{kad, PeerId};
use tokio::sync::mpsc;

use super::reputation::Offence;
use super::EventLoop;
use crate::network::chunks::ErrorCode;
use crate::network::records::RemoteProvider;
use crate::network::{
    AnnounceResponse, Announcement, ChunkRequest, ChunkResponse, RefuseReason, ReplicateRequest,
    ReplicateResponse,
};
use crate::node::replicate::InboundReplicate;
use crate::node::serve::records::Job as IntakeJob;
use crate::node::serve::Answer;
use crate::node::GossipIn;

impl EventLoop {
    pub(super) fn send_answer(&mut self, answer: Answer) {
        let behaviour = self.swarm.behaviour_mut();
        match answer {
            Answer::Chunk(peer, channel, response) => {
                self.chunk_service.done(&peer);
                let (bytes, outcome) = match &response {
                    ChunkResponse::Block(b) => (b.len() as u64, "block"),
                    ChunkResponse::Have(_) => (0, "have"),
                    ChunkResponse::NotFound => (0, "not_found"),
                    ChunkResponse::Error { code, .. } => (
                        0,
                        match code {
                            ErrorCode::BadRequest => "bad_request",
                            ErrorCode::Busy => "busy",
                            ErrorCode::Internal => "internal",
                        },
                    ),
                };
                // Counted only when it goes out: not for a requester that has gone.
                if behaviour.chunks.send_response(channel, response).is_ok() {
                    self.counters.bytes_served.inc_by(bytes);
                    self.counters.inbound("chunks", outcome);
                }
            }
            Answer::Announce(channel, response) => {
                let outcome = match &response {
                    AnnounceResponse::Refused { .. } => "refused",
                    _ => "stored",
                };
                if behaviour.announce.send_response(channel, response).is_ok() {
                    self.counters.inbound("announce", outcome);
                }
            }
        }
    }

    /// A gossiped record: handed to the collections service to check (its verdict comes back
    /// as a command); one for no collection of storgo's, or beyond what the service can take,
    /// is dropped here.
    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: libp2p::gossipsub::MessageId,
        message: libp2p::gossipsub::Message,
    ) {
        use libp2p::gossipsub::MessageAcceptance;
        let verdict = match crate::network::topic_collection(&message.topic) {
            None => MessageAcceptance::Reject,
            Some(collection) => {
                let job = GossipIn {
                    id: id.clone(),
                    source,
                    collection,
                    data: message.data,
                };
                match self.gossip_tx.try_send(job) {
                    Ok(()) => return,
                    Err(_) => MessageAcceptance::Ignore,
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, verdict);
    }

    pub(super) fn on_replicate_event(
        &mut self,
        event: request_response::Event<ReplicateRequest, ReplicateResponse>,
    ) {
        let Some((peer, request, channel)) = self
            .replicate_requests
            .route(event, |c| self.reach.relay_carrying(c))
        else {
            return;
        };
        // The replica service answers; when it is swamped, say so at once.
        if let Err(e) = self.replica_tx.try_send(InboundReplicate {
            peer,
            request,
            channel,
        }) {
            let refused = ReplicateResponse::Refused {
                reason: RefuseReason::Busy,
                message: "too many replicate requests".into(),
            };
            let channel = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => {
                    r.channel
                }
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .replicate
                .send_response(channel, refused);
        }
    }

    pub(super) fn on_announce_event(
        &mut self,
        event: request_response::Event<Announcement, AnnounceResponse>,
    ) {
        let Some((peer, announcement, channel)) = self
            .announce_requests
            .route(event, |c| self.reach.relay_carrying(c))
        else {
            return;
        };
        self.counters.announcements_received.inc_by(1);
        let refuse = |reason, message: &str| AnnounceResponse::Refused {
            reason,
            message: message.into(),
        };
        let refusal = if !self.dht_server {
            Some(refuse(RefuseReason::BadRequest, "not a DHT server"))
        } else if self.counters.stopping() {
            Some(refuse(RefuseReason::ShuttingDown, "stopping"))
        } else {
            None
        };
        if let Some(answer) = refusal {
            let _ = self
                .swarm
                .behaviour_mut()
                .announce
                .send_response(channel, answer);
            return;
        }
        let records = announcement
            .roots
            .iter()
            .map(|root| RemoteProvider {
                root: *root,
                provider: peer,
                addrs: announcement.addrs.clone(),
            })
            .collect();
        if let Err((channel, answer)) = self
            .record_intake
            .offer(IntakeJob::Announcement { records, channel })
        {
            let _ = self
                .swarm
                .behaviour_mut()
                .announce
                .send_response(channel, answer);
        }
    }

    /// A record a peer sent for this node to keep (kad stores nothing itself: inserts are
    /// filtered). Only provider records with a storgo key and collections' latest-version
    /// records (`collection-v1.md`) are taken in; any other `PUT_VALUE` is not stored.
    pub(super) fn on_inbound_record(&mut self, request: kad::InboundRequest) {
        let refused = &self.record_intake.counters.refused;
        match request {
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => match RemoteProvider::from_kad(&record) {
                Some(r) => {
                    let _ = self.record_intake.offer(IntakeJob::Provider(r));
                }
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %record.provider, "provider record with a key that is not a storgo root: not stored");
                }
            },
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                // Checked (signature, newer sequence) by the intake's thread, off the loop.
                if crate::collections::record::collection_of(&record.key).is_some() {
                    let _ = self.record_intake.offer(IntakeJob::Value(record));
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %source, "value record that is not a collection's: not stored (dht-v1.md)");
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_chunks_event(
        &mut self,
        event: request_response::Event<ChunkRequest, ChunkResponse>,
    ) {
        let Some((peer, request, channel)) = self
            .chunk_requests
            .route(event, |c| self.reach.relay_carrying(c))
        else {
            return;
        };
        tracing::trace!(peer = %peer, request = ?request, "serving");
        let (why, malformed) = match request {
            ChunkRequest::Invalid(why) => (why, true),
            ChunkRequest::Incomplete(why) => (why, false),
            request => {
                self.admit_chunk_request(peer, request, channel);
                return;
            }
        };
        // Cheap to answer here: no reader is needed to say what was wrong. Only a request that
        // arrived whole and is wrong counts against the peer.
        tracing::debug!(peer = %peer, reason = %why, "bad chunk request");
        if malformed {
            self.report(peer, Offence::Malformed);
        }
        let answer = crate::node::serve::chunks::bad_request(why);
        let _ = self
            .swarm
            .behaviour_mut()
            .chunks
            .send_response(channel, answer);
    }

    fn admit_chunk_request(
        &mut self,
        peer: PeerId,
        request: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
    ) {
        if let Err((channel, busy)) = self.chunk_service.admit(peer, request, channel) {
            self.counters.inbound("chunks", "busy");
            let _ = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_response(channel, busy);
        }
    }
}
