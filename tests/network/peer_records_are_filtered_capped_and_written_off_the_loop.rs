//! Hardening review, defect 2: what a peer sends for the DHT record store is filtered and
//! capped, and written off the event loop. A bare Kademlia peer (not a storgo node) sends
//! 2,000 ADD_PROVIDER records and some PUT_VALUE records to a node whose per-peer cap is 50;
//! meanwhile another peer fetches from the same node. The node keeps exactly 50 of that
//! peer's records and no value record, accounts for every record it was sent, and the fetch
//! completes.

use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig, Quorum, Record, RecordKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, StreamProtocol};
use storgo::network::{NetworkConfig, KAD_PROTOCOL};
use storgo::node::{fetch, FetchOptions, Node};
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

const SENT: u32 = 2_000;
const VALUES: u32 = 20;
const CAP: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_at_most_its_cap_and_no_value_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        Store::open(&tmp.path().join("a"), StoreOptions::default()).expect("open store"),
    );
    let cfg = NetworkConfig {
        max_providers_per_peer: CAP,
        ..loopback_config(vec![])
    };
    let a = Node::start(store, cfg).await.expect("start node");
    let path = tmp.path().join("notes");
    let data = write_random(&path, 8 << 20, 50);
    let id = add_and_provide(&a, &path).await;
    let before = a.client.info().await.unwrap();

    let mut spammer = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let store = MemoryStore::with_config(
                peer,
                MemoryStoreConfig {
                    max_provided_keys: SENT as usize,
                    ..Default::default()
                },
            );
            let cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kad::Behaviour::with_config(peer, store, cfg)
        })
        .unwrap()
        .build();
    spammer
        .behaviour_mut()
        .add_address(&a.client.peer_id(), addr(&a));
    spammer.behaviour_mut().set_mode(Some(kad::Mode::Client));
    // Records go in waves the node has taken in before the next starts: kad's handler drops a
    // new inbound stream when 32 are open and none can be reused, and a record lost that way
    // never reaches storgo, so a burst of 2,000 at once can lose some before they are counted.
    let key_of = |i: u32| {
        // Keys shaped like storgo's (multihash of a root) so that only the cap stops them.
        let mut key = vec![0x12, 0x20];
        key.extend_from_slice(&[0u8; 28]);
        key.extend_from_slice(&i.to_be_bytes());
        RecordKey::from(key)
    };
    let accounted_before =
        before.records_taken_in + before.records_refused + before.records_dropped;
    let client = a.client.clone();
    let spam = async {
        const WAVE: u32 = 16;
        let mut sent = 0;
        while sent < SENT + VALUES {
            let n = WAVE.min(SENT + VALUES - sent);
            for i in sent..sent + n {
                if i < SENT {
                    spammer.behaviour_mut().start_providing(key_of(i)).unwrap();
                } else {
                    let record = Record::new(
                        RecordKey::new(&(i - SENT).to_be_bytes()),
                        b"anything".to_vec(),
                    );
                    spammer
                        .behaviour_mut()
                        .put_record(record, Quorum::One)
                        .unwrap();
                }
            }
            let mut left = n;
            while left > 0 {
                if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    step,
                    result,
                    ..
                }) = spammer.select_next_some().await
                {
                    if step.last
                        && matches!(
                            result,
                            kad::QueryResult::StartProviding(_) | kad::QueryResult::PutRecord(_)
                        )
                    {
                        left -= 1;
                    }
                }
            }
            sent += n;
            // ADD_PROVIDER has no answer and the node no event for it: its counters are read.
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = spammer.select_next_some() => {}
                    _ = poll.tick() => {
                        let i = client.info().await.unwrap();
                        if i.records_taken_in + i.records_refused + i.records_dropped
                            >= accounted_before + u64::from(sent)
                        {
                            break;
                        }
                    }
                }
            }
        }
    };
    let c = start_node(&tmp.path().join("c"), vec![addr(&a)]).await;
    let opts = FetchOptions::default();
    let fetching = fetch(&c.client, &c.store, &id, &opts, &|_| {}, None);
    let ((), fetched) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(spam, fetching)
    })
    .await
    .expect("the spam and the fetch finish");
    fetched.expect("the fetch completes during the spam");
    let mut back = Vec::new();
    storgo::files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);

    // ADD_PROVIDER has no answer: wait (with a timeout) until the node's counters account for
    // every record; the node has no event to wait on, so its status is polled.
    let want = u64::from(SENT + VALUES) + before.records_taken_in;
    let accounted = |i: &storgo::node::NodeInfo| {
        i.records_taken_in + i.records_refused + i.records_dropped >= want
    };
    let info = tokio::time::timeout(Duration::from_secs(60), async {
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            let info = a.client.info().await.unwrap();
            if accounted(&info) {
                return info;
            }
        }
    })
    .await
    .expect("every record sent is accounted for within 60 s");
    eprintln!(
        "{} taken in, {} refused, {} dropped; {} rows held",
        info.records_taken_in,
        info.records_refused,
        info.records_dropped,
        info.provider_records_held
    );
    let from_c = info.records_taken_in - before.records_taken_in;
    assert!(
        from_c <= CAP + 1,
        "at most the cap from the spammer (and c's own record): {from_c}"
    );
    assert!(info.records_refused >= u64::from(SENT + VALUES) - CAP - info.records_dropped);
    assert!(
        info.provider_records_held <= before.provider_records_held + CAP + 1,
        "{info:?}"
    );
    let dht = storgo::network::DhtStore::new(a.store.clone(), a.client.peer_id());
    assert_eq!(
        libp2p::kad::store::RecordStore::records(&dht).count(),
        0,
        "no value record is stored"
    );
    for n in [a, c] {
        n.stop().await;
    }
}
