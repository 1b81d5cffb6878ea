//! Crafted BTF blobs for unit tests: a header, then the types and strings
//! a test lays out (little-endian, version 1).

/// A BTF blob of `types` (encoded `btf_type` records) and `strings`.
pub fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    out.extend_from_slice(&[1, 0]); // version, flags
    // hdr_len, type_off, type_len, str_off, str_len
    for word in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}
