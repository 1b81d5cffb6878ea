//! Gives freed heap memory back to the kernel after macdrop's few large,
//! short-lived allocations: the rtnetlink dumps (netlink-proto parses a
//! whole dump before the first message is read; the link dump, the largest,
//! is read a datagram at a time instead, `netlink::link_dump`) and aya's
//! parses of the kernel's BTF (~20 MB while parsing, once per start:
//! `kernel::loader::Batch`). glibc keeps such memory mapped once freed, so
//! without this the resident size stays at the start-up peak and each
//! later phase stacks on top of it.
//! `malloc_trim` returns whole free pages, also from the middle of the
//! heap; it costs about a millisecond, and runs only after those phases.

/// Releases the free pages of every malloc arena.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only inspects and releases the allocator's own
    // free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
