//! Following one's own collection and then unfollowing it used to delete the row that holds
//! the version new ones are built on: the next publish started a second history and `log`
//! answered "broken history at version 2". Now the unfollow is refused, naming the collection,
//! and the history stays whole.

use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_cannot_unfollow_its_own_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = start_node(&tmp.path().join("p"), vec![]).await;
    let peer = start_node(&tmp.path().join("q"), vec![addr(&publisher)]).await;
    wait_routing(&publisher, 1).await;
    let c = &publisher.collections;

    let id = c.create("course", false).await.unwrap();
    c.publish("course").await.unwrap();
    // Following it again changes nothing (its publisher always follows it)...
    c.follow(&id, false).await.unwrap();
    // ...and unfollowing it is refused, with its name.
    let refused = c.unfollow(&id).await.unwrap_err().to_string();
    assert!(
        refused.contains("course") && refused.contains("published from this node"),
        "{refused}"
    );
    c.publish("course").await.unwrap();
    let log = c.log("course").await.expect("the history verifies");
    let seqs: Vec<u64> = log.iter().map(|v| v.seq).collect();
    assert_eq!(seqs.len(), 2, "two versions in one history: {seqs:?}");
    assert!(seqs.contains(&1) && seqs.contains(&2), "{seqs:?}");

    for n in [publisher, peer] {
        n.stop().await;
    }
}
