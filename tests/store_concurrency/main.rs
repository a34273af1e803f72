//! Store operations through a running node, run concurrently: none may make another lose
//! data or report success for an incomplete item (DESIGN.md, "What keeps a block").

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/procs.rs"]
mod procs;

mod gc_during_add_keeps_the_item;
mod gc_during_fetch_keeps_the_item;
mod kill_during_concurrent_operations_keeps_what_succeeded;
mod kill_during_gc_then_restart;
mod random_concurrent_operations_keep_the_store_whole;
mod stress;
