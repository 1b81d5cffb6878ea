//! A MAC address value with the usual text form.

use std::{fmt, str::FromStr};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Mac)
    }
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

/// The vendor whose OUI starts `mac`, for the virtualisation vendors whose
/// switches and NICs are behind most rewritten MACs.
pub fn mac_vendor(mac: Mac) -> Option<&'static str> {
    match mac.0 {
        [0x00, 0x50, 0x56, ..] | [0x00, 0x0c, 0x29, ..] | [0x00, 0x05, 0x69, ..] => Some("VMware"),
        [0x00, 0x1c, 0x14, ..] => Some("VMware"),
        [0x52, 0x54, 0x00, ..] => Some("QEMU/KVM"),
        [0x00, 0x16, 0x3e, ..] => Some("Xen"),
        [0x00, 0x15, 0x5d, ..] => Some("Hyper-V"),
        [0x08, 0x00, 0x27, ..] => Some("VirtualBox"),
        [0x02, 0x42, ..] => Some("Docker"),
        _ => None,
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| format!("{s:?} is not a MAC address"))?;
            if part.len() != 2 {
                return Err(format!("{s:?} is not a MAC address"));
            }
            *byte =
                u8::from_str_radix(part, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?} is not a MAC address"));
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_form() {
        let mac: Mac = "02:00:00:00:0b:01".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0, 0, 0x0b, 1]);
        assert_eq!(mac.to_string(), "02:00:00:00:0b:01");
        assert!("02:00:00:00:0b".parse::<Mac>().is_err());
        assert!("02:00:00:00:0b:01:02".parse::<Mac>().is_err());
        assert!("zz:00:00:00:0b:01".parse::<Mac>().is_err());
    }

    #[test]
    fn group_bit_is_multicast() {
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(Mac::BROADCAST.is_multicast());
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_multicast());
    }
}
