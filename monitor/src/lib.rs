//! macdrop: counts, per interface, the frames a Linux host drops or
//! misdelivers because their destination MAC is not the receiver's.
//!
//! Data flows one way: kernel program (`monitor-ebpf`) -> maps ->
//! `kernel::counters` (the one collector) -> `model::World` -> `render`.
//! `netlink` and `topology` decide what to watch and fill the kernel's
//! configuration maps through `kernel::config`; a `session` does that for
//! one network namespace, the `monitor` drives all sessions and yields
//! reports, and the commands (`cmd`: watch, status, top, diagnose) decide
//! what to print and how to end.

pub mod classes;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod config_file;
pub mod delivery;
pub mod diagnose;
pub mod error;
pub mod evidence;
pub mod fdb_moves;
pub mod finding;
pub mod heap;
pub mod hypervisor;
pub mod ifname;
pub mod kernel;
pub mod kernel_version;
pub mod mac;
pub mod machine_id;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod netfilter;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod path;
pub mod privileges;
pub mod promisc;
pub mod render;
pub mod retention;
pub mod session;
pub mod status;
pub mod sysfs;
pub mod topology;
pub mod tracker;
pub mod tui;
pub mod untrusted;
pub mod verdict;
pub mod version;
pub mod workload;

#[cfg(test)]
mod module_graph_tests;
