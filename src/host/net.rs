//! What the host's network looks like to a bridge plan: its IPv4 and IPv6 routes, whether it
//! has IPv6 at all, its interfaces (and which are bridges), the ports bound on it, its
//! resolvers, and the leases a network has handed out. Read from files below the host root
//! (`/proc/net/route`, `/proc/net/ipv6_route`, `/proc/sys/net/ipv6`, `/proc/net/tcp*`,
//! `/proc/net/udp*`, `/sys/class/net`, `/etc/resolv.conf`, the lease directory) so tests point
//! it at a temporary directory; it writes nothing.

use super::Host;
use crate::profile::networks::{Proto, Subnet, Subnet6};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dest: Subnet,
    /// The line as an admin would read it ("10.0.0.0/8 dev eth1").
    pub text: String,
}

/// One IPv6 route (of any table: the local table's host routes name the host's addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    pub iface: String,
    pub dest: Subnet6,
    /// The route as an admin would read it ("fd00::/8 via fe80::1 dev eth1").
    pub text: String,
}

/// A socket bound on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub proto: Proto,
    pub ip: IpAddr,
    pub port: u16,
}

/// The host's network as the planner needs it; each part keeps its read error as text.
#[derive(Debug, Clone)]
pub struct NetFacts {
    pub routes: Result<Vec<Route>, String>,
    pub routes6: Result<Vec<Route6>, String>,
    /// Why new interfaces get no IPv6 (the kernel's or an admin's choice); None: they do.
    pub ipv6_off: Option<String>,
    /// Interface names, each with whether it is a bridge.
    pub links: Result<Vec<(String, bool)>, String>,
    pub bound: Result<Vec<Bound>, String>,
    /// Name servers of /etc/resolv.conf (none when there is no such file); an error when
    /// it is a symlink to a file that is missing (systemd-resolved's stub while resolved
    /// does not run) or cannot be read.
    pub resolvers: Result<Vec<IpAddr>, String>,
    /// Name servers of systemd-resolved's upstream file, /run/systemd/resolve/resolv.conf.
    pub upstream_resolvers: Vec<IpAddr>,
    /// The network's leased addresses, of both families.
    pub leases: Vec<IpAddr>,
}

impl Host {
    /// Reads the network facts; `lease_dir` is the network's lease directory; the bound
    /// ports only when `ports` (the profile publishes some).
    pub fn net_facts(&self, lease_dir: &Path, ports: bool) -> NetFacts {
        let text = |e: std::io::Error| e.to_string();
        NetFacts {
            routes: std::fs::read_to_string(self.path("/proc/net/route"))
                .map(|t| routes(&t))
                .map_err(text),
            routes6: match std::fs::read_to_string(self.path("/proc/net/ipv6_route")) {
                Ok(t) => Ok(routes6(&t)),
                // A kernel without IPv6 has no IPv6 routes (ipv6_off says why).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(format!("/proc/net/ipv6_route: {e}")),
            },
            ipv6_off: self.ipv6_off(),
            links: std::fs::read_dir(self.path("/sys/class/net"))
                .map(|dir| {
                    let mut v: Vec<(String, bool)> = dir
                        .flatten()
                        .map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            (name, e.path().join("bridge").exists())
                        })
                        .collect();
                    v.sort();
                    v
                })
                .map_err(text),
            bound: ["tcp", "tcp6", "udp", "udp6"]
                .iter()
                .filter(|_| ports)
                .map(|f| {
                    let proto = if f.starts_with("tcp") {
                        Proto::Tcp
                    } else {
                        Proto::Udp
                    };
                    match read_whole(&self.path(&format!("/proc/net/{f}"))) {
                        Ok(t) => Ok(bound(&t, proto)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                        Err(e) => Err(format!("/proc/net/{f}: {e}")),
                    }
                })
                .collect::<Result<Vec<Vec<Bound>>, String>>()
                .map(|v| v.into_iter().flatten().collect()),
            resolvers: self.resolv_conf(),
            upstream_resolvers: nameservers(
                &std::fs::read_to_string(self.path(UPSTREAM_RESOLV)).unwrap_or_default(),
            ),
            leases: std::fs::read_dir(self.path(&lease_dir.display().to_string()))
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A /proc/net table read in as few read(2) calls as it takes: each call walks the kernel's
/// socket hash tables from the start (std's read_to_string starts with a 32-byte probe and
/// grows: three walks of a table that fits in one read).
fn read_whole(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::with_capacity(256 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

impl Host {
    /// Why an interface made now would have no IPv6: the kernel has none (booted with
    /// ipv6.disable=1, or built without it), or disable_ipv6 is set for new interfaces.
    fn ipv6_off(&self) -> Option<String> {
        let conf = self.path("/proc/sys/net/ipv6/conf");
        if !conf.is_dir() {
            return Some(
                "the kernel has no IPv6 (/proc/sys/net/ipv6 is missing: booted with ipv6.disable=1?)"
                    .into(),
            );
        }
        ["all", "default"].iter().find_map(|c| {
            let v = std::fs::read_to_string(conf.join(c).join("disable_ipv6")).ok()?;
            (v.trim() == "1").then(|| {
                format!("IPv6 is disabled on this host (sysctl net.ipv6.conf.{c}.disable_ipv6 = 1)")
            })
        })
    }
}

/// The file systemd-resolved writes its upstream servers to (its stub file, the usual
/// target of /etc/resolv.conf, names only 127.0.0.53).
pub const UPSTREAM_RESOLV: &str = "/run/systemd/resolve/resolv.conf";

impl Host {
    /// The name servers of the host's /etc/resolv.conf. A symlink (systemd-resolved's
    /// `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`) is followed inside the
    /// host root, so an absolute target is found below a test's root too.
    fn resolv_conf(&self) -> Result<Vec<IpAddr>, String> {
        let etc = "/etc/resolv.conf";
        let is_link = std::fs::symlink_metadata(self.path(etc))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        let target = if is_link {
            self.resolve(etc).map_err(|e| format!("{etc}: {e}"))?
        } else {
            etc.to_owned()
        };
        match std::fs::read_to_string(self.path(&target)) {
            Ok(text) => Ok(nameservers(&text)),
            // No resolv.conf at all: the resolver library's default (none here).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !is_link => Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{etc} is a symlink to {target}, which does not exist (is the service that writes it, such as systemd-resolved, running?)"
            )),
            Err(e) => Err(format!("{target}: {e}")),
        }
    }
}

fn hex_ipv4(h: &str) -> Option<Ipv4Addr> {
    // /proc/net prints the address's 32 bits as a number in the host's byte order.
    u32::from_str_radix(h, 16)
        .ok()
        .map(|n| Ipv4Addr::from(n.to_ne_bytes()))
}

/// `/proc/net/route`: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
pub fn routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, gw, mask) = (
                f.first()?,
                hex_ipv4(f.get(1)?)?,
                hex_ipv4(f.get(2)?)?,
                hex_ipv4(f.get(7)?)?,
            );
            let prefix = u32::from(mask).count_ones() as u8;
            let dest = Subnet { addr: dest, prefix };
            let via = if gw.is_unspecified() {
                String::new()
            } else {
                format!(" via {gw}")
            };
            let shown = if prefix == 0 {
                "default".to_owned()
            } else {
                dest.to_string()
            };
            Some(Route {
                iface: (*iface).to_owned(),
                dest,
                text: format!("{shown}{via} dev {iface}"),
            })
        })
        .collect()
}

/// 32 hex digits, the address's bytes in network order (as /proc/net/ipv6_route prints them).
fn hex_ipv6_be(h: &str) -> Option<Ipv6Addr> {
    (h.len() == 32)
        .then(|| u128::from_str_radix(h, 16).ok())
        .flatten()
        .map(Ipv6Addr::from)
}

/// `/proc/net/ipv6_route`: dest prefix src src_prefix next_hop metric refcnt use flags iface.
/// Every table is listed; the same route in two tables is kept once.
pub fn routes6(text: &str) -> Vec<Route6> {
    let mut out: Vec<Route6> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let parsed = (|| {
            let dest = hex_ipv6_be(f.first()?)?;
            let prefix = u8::from_str_radix(f.get(1)?, 16)
                .ok()
                .filter(|p| *p <= 128)?;
            let via = hex_ipv6_be(f.get(4)?)?;
            let iface = f.get(9)?;
            let dest = Subnet6 { addr: dest, prefix };
            let shown = if prefix == 0 {
                "default".to_owned()
            } else {
                dest.to_string()
            };
            let via = if via.is_unspecified() {
                String::new()
            } else {
                format!(" via {via}")
            };
            Some(Route6 {
                iface: (*iface).to_owned(),
                dest,
                text: format!("{shown}{via} dev {iface}"),
            })
        })();
        if let Some(r) = parsed {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// Listening TCP sockets and bound UDP sockets of one `/proc/net/{tcp,udp}{,6}` file.
pub fn bound(text: &str, proto: Proto) -> Vec<Bound> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, state) = (f.get(1)?, f.get(3)?);
            // TCP_LISTEN; for UDP every socket in the file is bound (TCP_CLOSE is 07).
            if proto == Proto::Tcp && *state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = match addr.len() {
                8 => IpAddr::V4(hex_ipv4(addr)?),
                32 => {
                    let mut bytes = [0u8; 16];
                    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                        let w = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                        chunk.copy_from_slice(&w.to_ne_bytes());
                    }
                    IpAddr::V6(Ipv6Addr::from(bytes))
                }
                _ => return None,
            };
            (port != 0).then_some(Bound { proto, ip, port })
        })
        .collect()
}

/// The `nameserver` lines of a resolv.conf (a scope such as `%eth0` dropped).
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            w.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_files_are_read_as_the_kernel_writes_them() {
        let r = routes("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(r[0].text, "default via 192.168.2.1 dev eth0");
        assert_eq!(r[1].text, "192.168.2.0/24 dev eth0");
        let t = bound("  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:1F91 0100007F:0050 01 0\n", Proto::Tcp);
        assert_eq!(
            t,
            vec![Bound {
                proto: Proto::Tcp,
                ip: "127.0.0.1".parse().unwrap(),
                port: 8080
            }]
        );
        let t6 = bound("  sl  local_address\n 0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A\n", Proto::Tcp);
        assert_eq!(t6[0].ip, "::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_routes_are_read_as_the_kernel_writes_them() {
        // As Linux 6.x prints them: a link-local route, a ULA route via a router, the
        // default route, and the same /64 twice (main and local tables).
        let r = routes6(concat!(
            "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n",
            "fd000000000000000000000000000000 08 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n",
            "20010db8000000010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n",
            "20010db8000000010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n",
        ));
        let shown: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            shown,
            [
                "fe80::/64 dev eth0",
                "fd00::/8 via fe80::1 dev eth1",
                "default via 2001:db8::1 dev eth0",
                "2001:db8:0:1::/64 dev eth0"
            ]
        );
        assert_eq!(r[1].dest.prefix, 8);
    }

    #[test]
    fn ipv6_turned_off_is_told_with_the_setting_that_did_it() {
        let d = tempfile::tempdir().unwrap();
        let host = Host {
            root: d.path().to_owned(),
            euid: 0,
            egid: 0,
        };
        assert!(host.ipv6_off().unwrap().contains("ipv6.disable=1"));
        for c in ["all", "default"] {
            std::fs::create_dir_all(d.path().join("proc/sys/net/ipv6/conf").join(c)).unwrap();
            std::fs::write(
                d.path()
                    .join("proc/sys/net/ipv6/conf")
                    .join(c)
                    .join("disable_ipv6"),
                "0\n",
            )
            .unwrap();
        }
        assert_eq!(host.ipv6_off(), None);
        std::fs::write(
            d.path().join("proc/sys/net/ipv6/conf/default/disable_ipv6"),
            "1\n",
        )
        .unwrap();
        assert!(host
            .ipv6_off()
            .unwrap()
            .contains("net.ipv6.conf.default.disable_ipv6 = 1"));
    }
}
