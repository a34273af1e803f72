//! Multi-node behaviour with in-process nodes (real swarms on 127.0.0.1).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/nodes.rs"]
mod nodes;

mod corrupt_peer_is_dropped;
mod fetch_survives_provider_loss;
mod fetch_through_a_bootstrap_peer;
mod lookup_in_a_30_node_network;
mod republish_puts_records_on_each_roots_closest_peers;
