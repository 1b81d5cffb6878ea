//! Test harness for macdrop: throwaway network labs, raw frame injection and
//! a driver for the real `macdrop` binary, plus the demo behind
//! `cargo xtask demo`.
//!
//! Everything here needs root (network namespaces, AF_PACKET, XDP) and runs
//! against the real kernel. Each module does one job:
//!
//! - [`netns`]: namespace guards, deleted on drop even when a test panics;
//! - [`lab`]: the topologies of the tests and of `cargo xtask bench`;
//! - [`frames`]: raw Ethernet/IPv4/IPv6/ARP/VLAN frame builders;
//! - [`sender`]: sends exact numbers of frames from inside a namespace;
//! - [`promisc`]: holds an interface promiscuous like tcpdump does;
//! - [`pcap`]: reads a pcapng file back with tshark and tcpdump;
//! - [`receiver`]: counts and fingerprints what an interface receives;
//! - [`kernel`]: the kernel's own counters and FDB, via iproute2's JSON,
//!   and the size of its `IFLA_STATS64`, via netlink;
//! - [`bpf`]: which BPF programs and links a process holds, whether they
//!   outlive it, and the entries of its hash maps;
//! - [`btf`]: what the running kernel offers (drop reasons, TCX), from its
//!   own BTF, read without macdrop's code;
//! - [`docker`], [`podman`], [`cri`]: container engines of the tests' own
//!   (Docker, Podman, containerd's CRI), sharing [`engine`];
//! - [`macdrop`]: runs `macdrop watch` and reads its JSON reports;
//! - [`test_run`]: a veth of a chosen MAC in a namespace of its own, for
//!   BPF_PROG_TEST_RUN;
//! - [`scenarios`]: the end-to-end scenarios, run by the host suite and by
//!   the kernel matrix's guest on every kernel;
//! - [`skip`]: checks that cannot run here, counted as skipped by
//!   `cargo xtask test`, never as passed;
//! - [`wait`]: polling for a condition with a deadline;
//! - [`demo`]: reproduces the README's incident for a human reader.

pub mod bpf;
pub mod btf;
pub mod cri;
pub mod demo;
pub mod docker;
pub mod engine;
pub mod fate;
pub mod frames;
pub mod kernel;
pub mod lab;
pub mod macdrop;
pub mod netns;
pub mod pcap;
pub mod podman;
pub mod prometheus;
pub mod promisc;
pub mod receiver;
pub mod scenarios;
pub mod schema;
pub mod sender;
pub mod skip;
pub mod test_run;
pub mod wait;
