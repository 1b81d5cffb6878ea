//! The host's machine ID and the bridge MACs systemd derives from it.
//!
//! systemd-udevd's default `.link` (99-default.link,
//! `MACAddressPolicy=persistent`) gives a device that has no permanent MAC
//! one computed from `/etc/machine-id` and the device's name; so does
//! systemd-networkd for a `.netdev` without `MACAddress=`. A bridge named
//! br0 therefore gets the same MAC on every host cloned from one image
//! that kept the image's machine ID, and those hosts' neighbours see one
//! MAC move between them.
//!
//! The derivation, as systemd's `net_get_unique_predictable_data_from_name`
//! (src/shared/netif-util.c, unchanged from v252, Debian 12's, to the
//! newest) computes it: SipHash-2-4 over the 16 bytes of the machine ID
//! followed by the name (no terminator), with a fixed key, the result's
//! first six bytes in little-endian order; then the multicast bit cleared
//! and the locally-administered bit set (udev's `get_mac`, networkd's
//! `net_verify_hardware_address`). The name is the interface's own: a
//! bridge has none of the `ID_NET_NAME_*` properties udev would prefer.
//! udev and networkd use different keys. Checked against both programs
//! (udevadm 252.39's `net_setup_link` builtin and systemd-networkd 252.38)
//! by the vectors in the tests below.

use std::{fmt, fs, hash::Hasher, path::Path};

use siphasher::sip::SipHasher24;

use crate::mac::Mac;

/// Where systemd keeps the machine ID.
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// The 128-bit machine ID. Its `Debug` does not show it: machine-id(5)
/// asks that it not be exposed, so macdrop never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MachineId([u8; 16]);

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MachineId(..)")
    }
}

impl MachineId {
    /// The file's text as systemd reads it: 32 hexadecimal digits and an
    /// optional newline. None for anything else, including the all-zero ID
    /// and "uninitialized" (what an image prepared for cloning holds
    /// until first boot): systemd derives nothing from those either.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_suffix('\n').unwrap_or(text);
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        (id != [0; 16]).then_some(MachineId(id))
    }

    /// The ID in `path` (`MACHINE_ID_PATH` on a real host), or why not, in
    /// words (escaped: the file's contents are not shown).
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = crate::untrusted::escape_controls(&path.display().to_string());
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Self::parse(&text).ok_or_else(|| format!("{shown} holds no valid machine ID"))
    }
}

/// Who derives a MAC from the machine ID, each with its own SipHash key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deriver {
    /// systemd-udevd, `MACAddressPolicy=persistent` in a `.link` file
    /// (src/shared/netif-util.c's `HASH_KEY`).
    Udevd,
    /// systemd-networkd, a `.netdev` without `MACAddress=`
    /// (src/network/netdev/netdev.c's `HASH_KEY`).
    Networkd,
}

impl Deriver {
    pub const ALL: [Deriver; 2] = [Deriver::Udevd, Deriver::Networkd];

    fn key(self) -> [u8; 16] {
        match self {
            Deriver::Udevd => [
                0xd3, 0x1e, 0x48, 0xfa, 0x90, 0xfe, 0x4b, 0x4c, 0x9d, 0xaf, 0xd5, 0xd7, 0xa1, 0xb1,
                0x2e, 0x8a,
            ],
            Deriver::Networkd => [
                0x52, 0xe1, 0x45, 0xbd, 0x00, 0x6f, 0x29, 0x96, 0x21, 0xc6, 0x30, 0x6d, 0x83, 0x71,
                0x04, 0x48,
            ],
        }
    }

    /// The stable name, in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Deriver::Udevd => "systemd-udevd",
            Deriver::Networkd => "systemd-networkd",
        }
    }

    /// The MAC this program gives an interface named `name` on a host
    /// whose machine ID is `id`.
    pub fn derive(self, id: &MachineId, name: &str) -> Mac {
        let mut h = SipHasher24::new_with_key(&self.key());
        h.write(&id.0);
        h.write(name.as_bytes());
        let bytes = h.finish().to_le_bytes();
        let mut mac = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
        mac[0] &= 0xfe; // not multicast
        mac[0] |= 0x02; // locally administered
        Mac(mac)
    }
}

/// Which program would give `name` the MAC `mac` on this host, if any.
pub fn derived_by(id: &MachineId, name: &str, mac: Mac) -> Option<Deriver> {
    Deriver::ALL.into_iter().find(|d| d.derive(id, name) == mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "5c0a3ac5e1b24b5f8c0d1e2f30415263";

    /// Recorded 2026-12-06 on Debian 12, kernel 6.18: `ip link add NAME type
    /// bridge` in a namespace, the machine ID bind-mounted over
    /// /etc/machine-id, then udev 252.39's `udevadm test-builtin
    /// --action=add net_setup_link /sys/class/net/NAME` with Debian's
    /// 99-default.link (it applied the MAC: addr_assign_type 3), and
    /// systemd-networkd 252.38 creating NAME from a `.netdev` with
    /// `Kind=bridge` and no `MACAddress=`.
    const RECORDED: &[(&str, &str, &str, &str)] = &[
        // (machine ID, name, udevd's MAC, networkd's MAC)
        (A, "br0", "2e:51:d4:17:b5:1e", "52:9c:2f:97:80:e3"),
        (A, "docker0", "b2:fe:c7:fd:a2:a2", "b6:b6:98:91:44:94"),
        (A, "cni0", "32:d4:d3:ad:82:e0", "4e:ab:4c:86:08:81"),
        (A, "virbr0", "8e:08:43:03:f6:2e", "7a:8b:9d:bf:11:d9"),
        (A, "lxcbr0", "72:97:19:c8:7a:c2", "22:e8:ef:f6:2b:db"),
        (B, "br0", "1a:9b:0b:00:9c:75", "66:1c:c5:db:3a:18"),
        (B, "docker0", "f6:e3:49:df:cd:29", "12:22:ab:fc:7d:30"),
        (B, "cni0", "ae:f2:2a:c9:49:81", "c2:6f:c4:27:74:b1"),
        (B, "virbr0", "d2:8b:d0:50:05:cd", "b2:b0:f8:4c:d9:8a"),
        (B, "lxcbr0", "c2:45:79:39:6f:87", "56:3f:cd:24:f9:27"),
    ];

    #[test]
    fn the_derivation_is_what_udev_and_networkd_applied() {
        for (id, name, udevd, networkd) in RECORDED {
            let id = MachineId::parse(&format!("{id}\n")).unwrap();
            assert_eq!(
                Deriver::Udevd.derive(&id, name).to_string(),
                *udevd,
                "udevd {name}"
            );
            assert_eq!(
                Deriver::Networkd.derive(&id, name).to_string(),
                *networkd,
                "networkd {name}"
            );
            assert_eq!(
                derived_by(&id, name, udevd.parse().unwrap()),
                Some(Deriver::Udevd)
            );
            assert_eq!(
                derived_by(&id, name, networkd.parse().unwrap()),
                Some(Deriver::Networkd)
            );
        }
        // Another name's MAC, or another host's, is not derived here.
        let a = MachineId::parse(A).unwrap();
        assert_eq!(
            derived_by(&a, "br1", "2e:51:d4:17:b5:1e".parse().unwrap()),
            None
        );
        assert_eq!(
            derived_by(&a, "br0", "1a:9b:0b:00:9c:75".parse().unwrap()),
            None
        );
    }

    #[test]
    fn only_what_systemd_accepts_is_a_machine_id() {
        assert!(MachineId::parse(A).is_some());
        assert_eq!(
            MachineId::parse(&A.to_uppercase()),
            MachineId::parse(A),
            "systemd reads either case"
        );
        for bad in [
            "",
            "uninitialized\n",
            "00000000000000000000000000000000\n",
            "0123456789abcdef0123456789abcde\n",
            "0123456789abcdef0123456789abcdef0\n",
            "0123456789abcdef0123456789abcdeg\n",
            "01234567-89ab-cdef-0123-456789abcdef\n",
            "0123456789abcdef0123456789abcdef\n\n",
        ] {
            assert_eq!(MachineId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", MachineId::parse(A).unwrap()),
            "MachineId(..)"
        );
    }

    #[test]
    fn reading_names_the_file_escaped_and_never_its_contents() {
        let dir = std::env::temp_dir().join(format!("macdrop-mid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        fs::write(&good, format!("{B}\n")).unwrap();
        assert_eq!(MachineId::read(&good), Ok(MachineId::parse(B).unwrap()));
        let bad = dir.join("bad\x1b[2J");
        fs::write(&bad, "secret\x1b[31m\n").unwrap();
        let err = MachineId::read(&bad).unwrap_err();
        assert!(
            err.ends_with("/bad\\u{1b}[2J holds no valid machine ID"),
            "{err}"
        );
        assert!(!err.contains("secret"));
        let err = MachineId::read(&dir.join("none")).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
