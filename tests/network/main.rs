//! Multi-node behaviour with in-process nodes (real swarms on 127.0.0.1).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/nodes.rs"]
mod nodes;

mod a_busy_provider_is_asked_again_for_manifests;
mod a_crafted_item_is_walked_once_and_bounded;
mod a_flooding_peer_gets_busy_answers;
mod a_private_network_admits_only_key_holders;
mod a_publisher_cannot_unfollow_its_own_collection;
mod a_read_never_touches_pins;
mod a_taken_port_is_replaced_or_named;
mod a_temporary_node_runs_only_what_a_fetch_needs;
mod an_interrupted_fetch_is_resumed_or_let_go_at_restart;
mod an_item_added_alone_is_placed_when_peers_appear;
mod an_offline_unpin_is_no_longer_provided;
mod bad_requests_are_answered_bad_request;
mod collections_are_published_followed_and_verified;
mod corrupt_peer_is_dropped;
mod fetch_survives_provider_loss;
mod fetch_through_a_bootstrap_peer;
mod fetch_writes_output_as_chunks_arrive;
mod limits_bound_what_one_peer_may_ask;
mod lookup_in_a_30_node_network;
mod lying_providers_lose_score_and_are_banned;
mod peer_records_are_filtered_capped_and_written_off_the_loop;
mod republish_puts_records_on_each_roots_closest_peers;
mod the_node_answers_while_gc_and_expiry_run;
