//! Everything that talks to the BPF subsystem: loading the object, filling
//! the configuration maps, attaching hooks, reading counters and flows, and
//! running the programs on crafted frames (`test_run`).

pub mod attach;
pub mod batch;
#[cfg(test)]
pub mod btf_fixture;
pub mod config;
pub mod counters;
pub mod drop_subsys;
pub mod drops;
pub mod egress;
pub mod evidence;
pub mod flows;
pub mod klog;
pub mod loader;
pub mod self_stats;
pub mod tc;
pub mod test_run;
