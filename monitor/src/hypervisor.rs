//! Which hypervisor this host runs under, from the firmware's DMI tables
//! (`/sys/class/dmi/id`): a virtual switch that rejects MAC address
//! changes (VMware's "MAC address changes: reject", Hyper-V with MAC
//! spoofing off) silently stops delivering unicast to a NIC whose MAC was
//! changed, and nothing in the guest's kernel counts it.

use std::{fs, path::Path};

/// Where the kernel exports the DMI identification strings.
pub const DMI_DIR: &str = "/sys/class/dmi/id";

/// What the firmware says about the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmi {
    /// `sys_vendor`, e.g. "VMware, Inc.".
    pub vendor: Option<String>,
    /// `product_name`, e.g. "VMware Virtual Platform".
    pub product: Option<String>,
}

impl Dmi {
    /// The strings under `dir` (`DMI_DIR` on a real host); missing files
    /// (no DMI: containers, some ARM boards) leave them None.
    pub fn read(dir: &Path) -> Self {
        let field = |name: &str| {
            fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        Dmi {
            vendor: field("sys_vendor"),
            product: field("product_name"),
        }
    }

    /// The hypervisor these strings name, if any.
    pub fn hypervisor(&self) -> Option<&'static str> {
        let vendor = self.vendor.as_deref().unwrap_or("");
        let product = self.product.as_deref().unwrap_or("");
        if vendor.starts_with("VMware") || product.starts_with("VMware") {
            Some("VMware")
        } else if vendor == "Microsoft Corporation" && product == "Virtual Machine" {
            Some("Hyper-V")
        } else if vendor == "QEMU" || product.starts_with("KVM") {
            Some("QEMU/KVM")
        } else if vendor == "Xen" || product.starts_with("HVM domU") {
            Some("Xen")
        } else if product == "VirtualBox" {
            Some("VirtualBox")
        } else {
            None
        }
    }

    /// "DMI: sys_vendor \"VMware, Inc.\", product_name \"VMware Virtual
    /// Platform\"" (the strings escaped: they come from the firmware).
    pub fn describe(&self) -> String {
        let q = |s: &Option<String>| match s {
            Some(s) => format!("\"{}\"", crate::untrusted::escape_controls(s)),
            None => "-".into(),
        };
        format!(
            "DMI: sys_vendor {}, product_name {}",
            q(&self.vendor),
            q(&self.product)
        )
    }
}

/// Hypervisors whose virtual switch can reject a guest's MAC change
/// (VMware's port-group security policy, Hyper-V's MAC spoofing setting).
pub fn rejects_mac_changes(hypervisor: &str) -> bool {
    matches!(hypervisor, "VMware" | "Hyper-V")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded DMI directory, removed on drop.
    struct Fixture(std::path::PathBuf);

    impl Fixture {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn fixture(vendor: Option<&str>, product: Option<&str>) -> Fixture {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "macdrop-dmi-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap();
        let dir = Fixture(dir);
        if let Some(v) = vendor {
            fs::write(dir.path().join("sys_vendor"), format!("{v}\n")).unwrap();
        }
        if let Some(p) = product {
            fs::write(dir.path().join("product_name"), format!("{p}\n")).unwrap();
        }
        dir
    }

    /// Recorded `sys_vendor`/`product_name` pairs of each hypervisor.
    #[test]
    fn the_hypervisor_comes_from_recorded_dmi_strings() {
        for (vendor, product, want) in [
            ("VMware, Inc.", "VMware Virtual Platform", Some("VMware")),
            ("VMware, Inc.", "VMware20,1", Some("VMware")),
            ("Microsoft Corporation", "Virtual Machine", Some("Hyper-V")),
            ("QEMU", "Standard PC (Q35 + ICH9, 2009)", Some("QEMU/KVM")),
            ("Xen", "HVM domU", Some("Xen")),
            ("innotek GmbH", "VirtualBox", Some("VirtualBox")),
            ("Dell Inc.", "PowerEdge R640", None),
            ("Microsoft Corporation", "Surface Laptop 4", None),
        ] {
            let dir = fixture(Some(vendor), Some(product));
            let dmi = Dmi::read(dir.path());
            assert_eq!(dmi.vendor.as_deref(), Some(vendor));
            assert_eq!(dmi.hypervisor(), want, "{vendor} / {product}");
        }
        assert!(rejects_mac_changes("VMware") && rejects_mac_changes("Hyper-V"));
        assert!(!rejects_mac_changes("QEMU/KVM"));
    }

    #[test]
    fn no_dmi_is_no_hypervisor_and_strings_are_escaped() {
        let dir = fixture(None, None);
        let dmi = Dmi::read(dir.path());
        assert_eq!(dmi, Dmi::default());
        assert_eq!(dmi.hypervisor(), None);
        assert_eq!(dmi.describe(), "DMI: sys_vendor -, product_name -");
        let dir = fixture(Some("Evil\x1b[2J"), None);
        assert_eq!(
            Dmi::read(dir.path()).describe(),
            "DMI: sys_vendor \"Evil\\u{1b}[2J\", product_name -"
        );
    }
}
