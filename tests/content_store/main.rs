//! Integration tests of the local content store (one binary, one module per property).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/procs.rs"]
mod procs;

mod a_damaged_data_dir_is_refused_at_start;
mod bad_input_is_rejected_cleanly;
mod codecs_never_panic;
mod crash_during_add;
mod dedup_stores_shared_chunks_once;
mod gc_keeps_shared_chunks;
mod links_are_kept_as_links_and_never_followed;
mod messages_round_trip;
mod odd_entries_are_skipped_once_each;
mod protocol_vectors;
mod round_trips;
mod what_get_writes_is_safe;
