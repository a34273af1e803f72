//! Shared collections across real in-process nodes: a publisher, followers and a DHT peer.
//!
//! Three versions reach a follower by gossipsub push (timed); one published while the
//! follower was offline reaches it through the DHT when it is back; the history verifies;
//! auto-fetch pins new items; search finds entries by word and tag; with the publisher gone, a
//! new follower still resolves the newest version. Forged, replayed and stranger-signed
//! records are refused by DHT peers; a delegate publishes and a stranger cannot; a private
//! collection is sealed without its read key, and its key rotated; a validly signed version
//! that rewrites the past is refused by a follower, and the next real version skips over it.

use std::time::{Duration, Instant};

use libp2p::kad::Record;
use storgo::collections::record::dht_key;
use storgo::collections::{CollectionId, Entry, Latest};
use storgo::node::collections::{CollectionEvent, ServiceError};
use storgo::node::Node;
use tokio::sync::broadcast;

use crate::common::*;
use crate::nodes::*;

fn entry(id: &storgo::content::ContentId, title: &str, tags: &[&str]) -> Entry {
    Entry {
        id: id.to_string(),
        title: title.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        note: "from the test".into(),
        added: 0,
    }
}

/// Waits for the event of version `seq` of `id` (earlier versions' events are skipped).
async fn version_seen(
    rx: &mut broadcast::Receiver<CollectionEvent>,
    id: &CollectionId,
    seq: u64,
) -> CollectionEvent {
    let want = id.public().to_string();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.collection == want && e.seq >= seq => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("version {seq} reaches the follower within 30 s"))
}

async fn pinned(node: &Node, id: &storgo::content::ContentId) -> bool {
    let store = node.store.clone();
    let root = id.root;
    tokio::task::spawn_blocking(move || store.dht().get_pin(&root))
        .await
        .unwrap()
        .unwrap()
        .is_some_and(|p| !p.partial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_reach_followers_by_push_and_through_the_dht_and_outlive_the_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("p"), vec![]).await;
    let boot = vec![addr(&publisher)];
    let holder = start_node(&tmp.path().join("h"), boot.clone()).await;
    let follower_dir = tmp.path().join("f");
    let follower = start_node(&follower_dir, boot.clone()).await;
    wait_routing(&follower, 2).await;
    wait_routing(&publisher, 2).await;

    let id = publisher
        .collections
        .create("algo-101", false)
        .await
        .unwrap();
    let notes1 = tmp.path().join("lecture1.txt");
    write_random(&notes1, 300_000, 1);
    let item1 = add_and_provide(&publisher, &notes1).await;
    publisher
        .collections
        .add(
            "algo-101",
            entry(&item1, "Lecture 1 notes: sorting", &["lecture", "week1"]),
        )
        .await
        .unwrap();

    let mut news = follower.collections.subscribe();
    assert!(
        !follower.collections.follow(&id, true).await.unwrap(),
        "nothing published yet"
    );

    // Versions 1 and 2: pushed over gossipsub.
    let mut push_ms = Vec::new();
    let t = Instant::now();
    let p1 = publisher.collections.publish("algo-101").await.unwrap();
    assert_eq!(p1.seq, 1);
    let e1 = version_seen(&mut news, &id, 1).await;
    push_ms.push(t.elapsed().as_millis());
    assert_eq!(e1.name, "algo-101");
    assert_eq!(e1.new_entries.len(), 1);
    // The version is an item storgo keeps (pinned, provided, replicated) but not the user's:
    // `ls` and the page list only what people pinned.
    let pins = publisher.store.pins().unwrap();
    assert!(
        pins.iter()
            .any(|p| p.internal && p.name == "collection-version"),
        "{pins:?}"
    );
    assert!(publisher
        .store
        .user_pins()
        .unwrap()
        .iter()
        .all(|p| !p.internal && p.name != "collection-version"));

    let notes2 = tmp.path().join("assignment1.pdf");
    write_random(&notes2, 200_000, 2);
    let item2 = add_and_provide(&publisher, &notes2).await;
    publisher
        .collections
        .add(
            "algo-101",
            entry(&item2, "Assignment 1 (final)", &["assignment"]),
        )
        .await
        .unwrap();
    let t = Instant::now();
    publisher.collections.publish("algo-101").await.unwrap();
    let e2 = version_seen(&mut news, &id, 2).await;
    push_ms.push(t.elapsed().as_millis());
    assert_eq!(e2.new_entries.len(), 1);
    assert_eq!(e2.new_entries[0].title, "Assignment 1 (final)");
    eprintln!("publish → follower saw it (push): {push_ms:?} ms");

    // Auto-fetch pins every new item (it runs in the background: wait for it).
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            if pinned(&follower, &item1).await && pinned(&follower, &item2).await {
                return;
            }
        }
    })
    .await
    .expect("auto-fetch pins both items within 60 s");

    // Version 3 while the follower is offline: found through the DHT when it is back.
    follower.stop().await;
    publisher
        .collections
        .remove("algo-101", &item1.to_string())
        .await
        .unwrap();
    let p3 = publisher.collections.publish("algo-101").await.unwrap();
    assert_eq!(p3.seq, 3);
    assert!(p3.in_dht, "another DHT peer took the record");
    let store =
        std::sync::Arc::new(storgo::store::Store::open(&follower_dir, Default::default()).unwrap());
    let t = Instant::now();
    let follower = Node::start(store, loopback_config(boot.clone()))
        .await
        .unwrap();
    let mut news = follower.collections.subscribe();
    let e3 = version_seen(&mut news, &id, 3).await;
    eprintln!(
        "back online → version 3 taken from the DHT in {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(e3.seq, 3);
    let view = follower.collections.show(&id.to_string()).await.unwrap();
    assert_eq!(view.seq, 3);
    assert_eq!(view.entries.len(), 1, "version 3 removed the first item");

    // The history verifies, newest first.
    let log = follower.collections.log(&id.to_string()).await.unwrap();
    assert_eq!(log.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert!(log.iter().all(|h| h.signer == "owner"));

    // Search, by word and by tag, names the collection and version.
    let hits = follower
        .collections
        .search("assignment", None, 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].seq, 3);
    assert_eq!(hits[0].name, "algo-101");
    assert_eq!(hits[0].entry.id, item2.to_string());
    let by_tag = follower
        .collections
        .search("", Some("assignment"), 10)
        .await
        .unwrap();
    assert_eq!(by_tag.len(), 1);
    assert!(
        follower
            .collections
            .search("sorting", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "an entry removed by the newest version is no longer found"
    );

    // The publisher gone: a new follower still resolves version 3 (records on the DHT peers,
    // the version served by the follower that pinned it).
    publisher.stop().await;
    let late = start_node(&tmp.path().join("late"), vec![addr(&holder)]).await;
    wait_routing(&late, 1).await;
    assert!(
        late.collections.follow(&id, false).await.unwrap(),
        "found without the publisher"
    );
    let v = late.collections.show(&id.to_string()).await.unwrap();
    assert_eq!((v.seq, v.entries.len()), (3, 1));
    for n in [holder, follower, late] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_records_are_refused_and_only_delegates_publish() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = start_node(&tmp.path().join("o"), vec![]).await;
    let boot = vec![addr(&owner)];
    let ta = start_node(&tmp.path().join("ta"), boot.clone()).await;
    let stranger = start_node(&tmp.path().join("s"), boot.clone()).await;
    wait_routing(&ta, 2).await;
    wait_routing(&stranger, 2).await;

    let id = owner.collections.create("course", true).await.unwrap();
    let file = tmp.path().join("slides.pdf");
    write_random(&file, 100_000, 3);
    let item = add_and_provide(&owner, &file).await;
    owner
        .collections
        .add("course", entry(&item, "Slides", &["lecture"]))
        .await
        .unwrap();
    owner
        .collections
        .delegate("course", ta.collections.identity_key())
        .await
        .unwrap();
    owner.collections.publish("course").await.unwrap();
    let record1 = owner.collections.find_latest(&id).await.unwrap().unwrap();
    assert_eq!(record1.seq, 1);

    // The teaching assistant takes it up and publishes version 2.
    ta.collections.adopt("course", &id).await.unwrap();
    let file2 = tmp.path().join("exercise.pdf");
    write_random(&file2, 50_000, 4);
    let item2 = add_and_provide(&ta, &file2).await;
    ta.collections
        .add("course", entry(&item2, "Exercise sheet", &["exercise"]))
        .await
        .unwrap();
    let v2 = ta.collections.publish("course").await.unwrap();
    assert_eq!(v2.seq, 2);
    let log = owner.collections.log(&id.to_string()).await.unwrap();
    assert_eq!(
        log[0].signer,
        format!("delegate {}", hex::encode(ta.collections.identity_key()))
    );

    // A stranger who takes it up cannot publish.
    stranger.collections.adopt("course", &id).await.unwrap();
    match stranger.collections.publish("course").await {
        Err(ServiceError::Collection(storgo::collections::CollectionError::NotAuthorized)) => {}
        other => panic!("a stranger published: {other:?}"),
    }

    // What DHT peers keep: a forged record (stranger's key), and version 1's record replayed
    // over version 2's, are refused; the newest stays.
    let before = owner.client.info().await.unwrap().records_refused;
    let forged_key = libp2p::identity::ed25519::Keypair::generate();
    let forged = Latest::sign(id.key, 99, &item, &forged_key, None);
    // Version 1's record as the owner signed it: a valid signature, an old sequence number.
    for bytes in [forged.bytes, record1.bytes.clone()] {
        let _ = stranger
            .client
            .put_record(Record::new(dht_key(&id.key), bytes))
            .await
            .unwrap();
    }
    let held = ta.collections.find_latest(&id).await.unwrap().unwrap();
    assert_eq!(held.seq, 2);
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            if owner.client.info().await.unwrap().records_refused >= before + 2 {
                return;
            }
        }
    })
    .await
    .expect("the owner's node refuses both records");
    let newest = stranger
        .collections
        .find_latest(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.seq, 2, "the forged sequence 99 was not taken");

    // The private listing: readable with the ID, sealed without its read key.
    let outsider = start_node(&tmp.path().join("x"), boot.clone()).await;
    wait_routing(&outsider, 1).await;
    let shown = outsider
        .collections
        .show(&id.public().to_string())
        .await
        .unwrap();
    assert_eq!(shown.seq, 2);
    assert!(shown.sealed);
    assert!(shown.entries.is_empty());
    let with_key = outsider.collections.show(&id.to_string()).await.unwrap();
    assert_eq!(with_key.entries.len(), 2);

    // Removing a member: a new read key from the next version on. The old ID reads the old
    // versions only; the new one reads the new version, which kept every entry.
    outsider.collections.follow(&id, false).await.unwrap();
    let mut news = outsider.collections.subscribe();
    let mut ta_news = ta.collections.subscribe();
    let new_id = owner.collections.rotate("course").await.unwrap();
    assert_eq!(new_id.key, id.key);
    assert_ne!(new_id.read, id.read);
    assert_eq!(owner.collections.publish("course").await.unwrap().seq, 3);
    version_seen(&mut news, &id, 3).await;
    let seen = outsider.collections.show(&id.to_string()).await.unwrap();
    assert_eq!(seen.seq, 3);
    assert!(seen.sealed, "the old read key does not open version 3");
    let fresh = start_node(&tmp.path().join("y"), boot.clone()).await;
    wait_routing(&fresh, 1).await;
    let with_new = fresh.collections.show(&new_id.to_string()).await.unwrap();
    assert_eq!((with_new.seq, with_new.entries.len()), (3, 2));
    fresh.stop().await;

    // A version signed with the owner's own key but naming the wrong previous version (a
    // rewritten past: version 3 on top of version 1, leaving out the TA's version 2). DHT peers
    // take its record (the signature holds, the sequence is higher); a follower that had
    // version 2 refuses the version it names, with the reason, and keeps version 2.
    version_seen(&mut ta_news, &id, 3).await;
    let owned = storgo::collections::Book::new(owner.store.clone())
        .owned("course")
        .unwrap();
    let key = owned.keypair().expect("the owner's key");
    let v1_id: storgo::content::ContentId = record1.version;
    let listing = storgo::collections::Listing {
        name: "course".into(),
        entries: vec![],
    };
    let bytes = storgo::collections::version::NewVersion {
        collection: &id,
        seq: 4,
        prev: Some(v1_id),
        published: 1,
        delegates: vec![],
        listing: &listing,
    }
    .sign(&key, None, [9; 32]);
    let store = owner.store.clone();
    let rewritten = tokio::task::spawn_blocking(move || {
        storgo::files::add_reader(&store, &bytes[..], "v3", &Default::default(), &|_| {})
    })
    .await
    .unwrap()
    .unwrap()
    .id;
    owner.client.provide(rewritten.root).await.unwrap();
    let bad = Latest::sign(id.key, 4, &rewritten, &key, None);
    let _ = owner
        .client
        .put_record(Record::new(dht_key(&id.key), bad.bytes))
        .await
        .unwrap();
    match ta.collections.refresh(&id).await {
        Err(ServiceError::Collection(storgo::collections::CollectionError::BrokenChain {
            seq,
            why,
        })) => {
            assert_eq!(seq, 4);
            assert!(why.contains("history does not contain"), "{why}");
        }
        other => panic!("a rewritten history was taken: {other:?}"),
    }
    assert_eq!(ta.collections.show(&id.to_string()).await.unwrap().seq, 3);
    let mut news = ta.collections.subscribe();
    assert_eq!(owner.collections.publish("course").await.unwrap().seq, 5);
    let taken = version_seen(&mut news, &id, 5).await;
    assert_eq!(taken.seq, 5, "version 5 follows version 3: taken");
    for n in [owner, ta, stranger, outsider] {
        n.stop().await;
    }
}
