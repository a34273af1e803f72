//! Multi-node behaviour with in-process nodes (real swarms on 127.0.0.1).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/nodes.rs"]
mod nodes;

mod fetch_through_a_bootstrap_peer;
