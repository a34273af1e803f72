//! The end-to-end path with the real binary in several processes.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/http.rs"]
mod http;
#[path = "../common/procs.rs"]
mod procs;

mod a_clean_stop_is_not_reported_as_a_crash;
mod a_container_cluster_survives_a_stopped_and_a_cut_off_node;
mod a_course_is_published_and_followed_from_the_command_line;
mod a_fetch_keeps_looking_until_its_timeout;
mod a_full_disk_fails_cleanly_and_the_node_keeps_serving;
mod a_killed_node_resumes_without_refetching;
mod a_walk_keeps_manifests_on_disk_not_in_memory;
mod columns_outlive_a_killed_adder_and_two_holders;
mod health_checks_and_json_logs;
mod lan_discovery_across_namespaces;
mod nat;
mod netns;
mod nodes_behind_nats_reach_each_other;
mod partition_heals_to_r_holders;
mod replicas_outlive_a_killed_adder;
mod settings_come_from_flags_env_file_then_defaults;
mod slow_readers_do_not_stall_the_node;
mod the_api_document_holds_under_a_fuzzer;
mod the_gateway_serves_what_a_browser_expects;
mod the_http_api_answers_as_documented;
mod the_web_page_works_in_chromium;
mod three_processes_add_and_fetch;
