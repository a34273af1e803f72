//! What the DHT record store takes from peers (provider record keys) and reads back from disk
//! (ban rows).
#![no_main]
use libfuzzer_sys::fuzz_target;
use libp2p::kad::{ProviderRecord, RecordKey};
use libp2p::PeerId;
use storgo::network::records::RemoteProvider;

fuzz_target!(|data: &[u8]| {
    let record = ProviderRecord::new(RecordKey::from(data.to_vec()), PeerId::random(), vec![]);
    if let Some(r) = RemoteProvider::from_kad(&record) {
        assert_eq!(storgo::network::provider_key(&r.root).to_vec(), data);
    }
    let _ = ciborium::from_reader::<storgo::node::Ban, _>(data);
});
