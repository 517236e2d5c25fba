//! Socket address families by name: the one table `security.address_families` is checked
//! against, planned from and documented with. Numbers are the kernel's (`linux/socket.h`).

/// Every family the kernel knows, by the name systemd's `RestrictAddressFamilies=` uses.
pub const FAMILIES: &[(&str, i32)] = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_INET", libc::AF_INET),
    ("AF_AX25", libc::AF_AX25),
    ("AF_IPX", libc::AF_IPX),
    ("AF_APPLETALK", libc::AF_APPLETALK),
    ("AF_NETROM", libc::AF_NETROM),
    ("AF_BRIDGE", libc::AF_BRIDGE),
    ("AF_ATMPVC", libc::AF_ATMPVC),
    ("AF_X25", libc::AF_X25),
    ("AF_INET6", libc::AF_INET6),
    ("AF_ROSE", libc::AF_ROSE),
    ("AF_DECnet", libc::AF_DECnet),
    ("AF_NETBEUI", libc::AF_NETBEUI),
    ("AF_SECURITY", libc::AF_SECURITY),
    ("AF_KEY", libc::AF_KEY),
    ("AF_NETLINK", libc::AF_NETLINK),
    ("AF_PACKET", libc::AF_PACKET),
    ("AF_ASH", libc::AF_ASH),
    ("AF_ECONET", libc::AF_ECONET),
    ("AF_ATMSVC", libc::AF_ATMSVC),
    ("AF_RDS", libc::AF_RDS),
    ("AF_SNA", libc::AF_SNA),
    ("AF_IRDA", libc::AF_IRDA),
    ("AF_PPPOX", libc::AF_PPPOX),
    ("AF_WANPIPE", libc::AF_WANPIPE),
    ("AF_LLC", libc::AF_LLC),
    ("AF_IB", libc::AF_IB),
    ("AF_MPLS", libc::AF_MPLS),
    ("AF_CAN", libc::AF_CAN),
    ("AF_TIPC", libc::AF_TIPC),
    ("AF_BLUETOOTH", libc::AF_BLUETOOTH),
    ("AF_IUCV", libc::AF_IUCV),
    ("AF_RXRPC", libc::AF_RXRPC),
    ("AF_ISDN", libc::AF_ISDN),
    ("AF_PHONET", libc::AF_PHONET),
    ("AF_IEEE802154", libc::AF_IEEE802154),
    ("AF_CAIF", libc::AF_CAIF),
    ("AF_ALG", libc::AF_ALG),
    ("AF_NFC", libc::AF_NFC),
    ("AF_VSOCK", libc::AF_VSOCK),
    ("AF_KCM", 41),
    ("AF_QIPCRTR", 42),
    ("AF_SMC", 43),
    ("AF_XDP", libc::AF_XDP),
    ("AF_MCTP", 45),
];

/// One past the highest family number: socket(2) with anything at or above it is refused
/// too, so a family added by a newer kernel is never allowed by omission.
pub const AF_MAX: i32 = 46;

/// What a daemon needs: local sockets, IP, and netlink (glibc's getaddrinfo asks the kernel
/// for the interfaces' addresses over it). AF_VSOCK above all is left out: it reaches the
/// hypervisor and the host's vsock port space whatever the network namespace.
pub const DEFAULT: &[&str] = &["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"];

/// The number of a family name (`AF_INET` or `inet`, any case).
pub fn family(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("AF_") {
        upper
    } else {
        format!("AF_{upper}")
    };
    FAMILIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&full))
        .map(|&(_, nr)| nr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_distinct_numbers_below_af_max() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, nr) in super::FAMILIES {
            assert!(*nr < super::AF_MAX, "{name}");
            assert!(seen.insert(*nr), "{name} repeats {nr}");
        }
        assert_eq!(super::family("inet6"), Some(libc::AF_INET6));
        assert_eq!(super::family("af_vsock"), Some(libc::AF_VSOCK));
        assert_eq!(super::family("AF_NOPE"), None);
    }
}
