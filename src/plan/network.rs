//! The network decisions: which mode the sandbox's network has, and for a bridge which named
//! network it joins, with which addresses (IPv4, and IPv6 when the network has `subnet6`),
//! published ports, outbound NAT and name servers. Everything is checked here, before any
//! side effect, against facts gathered up front: the network's definition, the host's IPv4
//! and IPv6 routes (a subnet overlapping one is refused, naming the route), whether the host
//! has IPv6, its interfaces (a bridge name taken by another kind of interface), the ports
//! bound on it (of both families) and the network's leases. Pure: no I/O, no syscalls.
//!
//! How `namespaces.net` maps: `mode = "host"` is `net = false`; `none` and `bridge` are
//! `net = true`. Without `mode`, `net = false` means host and anything else none. Writing
//! both so that they disagree is one error (profile validation).

use super::{Builder, Decided, Invocation, Provenance};
use crate::host::net::Bound;
use crate::host::Needs;
use crate::profile::networks::{parse_publish, NetworkDef, Proto, Publish};
use crate::profile::schema::or;
use crate::profile::values::NetMode;
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Leases and the bridge's ownership mark, one directory per network.
pub const NETWORKS_DIR: &str = "/run/stockade/networks";

/// A bridge network's state directory on the host.
pub fn network_dir(name: &str) -> PathBuf {
    PathBuf::from(NETWORKS_DIR).join(name)
}

/// Where a network's leases are: one file per leased address, named after it.
pub fn lease_dir(name: &str) -> PathBuf {
    network_dir(name).join("leases")
}

/// Everything a bridge sandbox's network is, decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The named network, as the profile or the default chose it.
    pub network: Decided<String>,
    /// Its definition, as its files (or the built-in `default`) say.
    pub def: NetworkDef,
    /// The address asked for; None: the first free one is leased at start.
    pub address: Option<Decided<Ipv4Addr>>,
    /// The IPv6 address asked for; None: on a network with subnet6 the first free one is
    /// leased at start (with the IPv4 one), on an IPv4-only network there is none.
    pub address6: Option<Decided<Ipv6Addr>>,
    pub publish: Vec<Decided<Publish>>,
    pub outbound: Decided<bool>,
    /// The name servers of the sandbox's /etc/resolv.conf.
    pub dns: Decided<Vec<IpAddr>>,
    /// The host end of the sandbox's veth pair (the other end is eth0 inside).
    pub veth: String,
    /// The network's state directory on the host (leases, lock, bridge ownership).
    pub state_dir: PathBuf,
    /// The sandbox's name in its generated /etc/hosts.
    pub hostname: String,
    /// The generated /etc/hosts and /etc/resolv.conf on the host, written at start (the
    /// address is leased then) and bound read-only over the sandbox's.
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
}

/// The generated files' targets inside the sandbox.
pub const HOSTS: &str = "/etc/hosts";
pub const RESOLV: &str = "/etc/resolv.conf";

/// The mode in effect, `namespaces.net` taken into account.
pub fn mode(p: &Profile) -> NetMode {
    match (&p.network.mode, &p.namespaces.net) {
        (Some(m), _) => m.value,
        (None, Some(n)) if !n.value => NetMode::Host,
        _ => NetMode::None,
    }
}

fn network_name(p: &Profile) -> String {
    or(&p.network.network, "default".to_owned())
}

/// What a bridge plan asks of the host: the network's definition, routes, interfaces,
/// bound ports, resolvers and leases.
pub fn needs(p: &Profile, inv: &Invocation, n: &mut Needs) {
    if mode(p) == NetMode::Bridge {
        let name = network_name(p);
        n.network = Some((name.clone(), inv.network_dirs.clone(), lease_dir(&name)));
        n.network_ports = p
            .network
            .publish
            .as_ref()
            .is_some_and(|l| !l.value.is_empty());
    }
}

/// The name servers a bridge sandbox gets from the host when the profile names none: those
/// of the host's /etc/resolv.conf that are not on loopback. A loopback stub (systemd-
/// resolved's 127.0.0.53, dnsmasq's 127.0.0.1) is unreachable from the sandbox's
/// namespace: the servers it forwards to are used instead, as Docker and podman do, from
/// systemd-resolved's upstream file. With none to be had (a symlink to a missing file, a
/// stub without an upstream file) the error says so and that `dns` fixes it: a sandbox
/// silently without name servers would fail later and far from the cause.
fn host_dns(facts: &crate::host::net::NetFacts) -> Result<Vec<IpAddr>, String> {
    let fix = "name the servers with `dns = [\"ADDRESS\", ...]` in [network]";
    let host = facts
        .resolvers
        .as_ref()
        .map_err(|e| format!("{e}: the sandbox would have no name server; {fix}"))?;
    if host.is_empty() || !host.iter().all(IpAddr::is_loopback) {
        return Ok(host
            .iter()
            .filter(|ip| !ip.is_loopback())
            .copied()
            .collect());
    }
    if facts.upstream_resolvers.iter().all(IpAddr::is_loopback) {
        let list: Vec<String> = host.iter().map(ToString::to_string).collect();
        return Err(format!(
            "the host's name server {} is on loopback, which the sandbox cannot reach, and {} names no other; {fix}",
            list.join(", "),
            crate::host::net::UPSTREAM_RESOLV
        ));
    }
    Ok(facts
        .upstream_resolvers
        .iter()
        .filter(|ip| !ip.is_loopback())
        .copied()
        .collect())
}

/// The bridge plan, or None for the other modes. Problems go to the builder.
pub(crate) fn plan(
    b: &mut Builder,
    p: &Profile,
    inv: &Invocation,
    sandbox: &str,
) -> Option<NetworkPlan> {
    if mode(p) != NetMode::Bridge {
        return None;
    }
    let n = &p.network;
    let name = network_name(p);
    let name_from = b.at.setting(&n.network, "network.network");
    let problem = |b: &mut Builder, msg: String| match &n.network {
        Some(v) => b.err(v, "network.network", msg),
        None => b.file_err("network.network", msg),
    };
    let Some((def, facts)) = b.host.network.clone() else {
        problem(b, "the network facts were not gathered (a bug in stockade: plan::needs does not name them)".into());
        return None;
    };
    let def = match def {
        Ok(Some(d)) => d,
        Ok(None) => {
            let looked: Vec<String> = inv
                .network_dirs
                .iter()
                .map(|d| d.join(format!("{name}.toml")).display().to_string())
                .collect();
            problem(
                b,
                format!(
                    "network `{name}` is not defined; looked for {}",
                    if looked.is_empty() {
                        "no files".into()
                    } else {
                        looked.join(", ")
                    }
                ),
            );
            return None;
        }
        Err(e) => {
            problem(b, format!("network `{name}`: {e}"));
            return None;
        }
    };
    let where_defined = def.path.as_ref().map_or_else(
        || format!("define it in /etc/stockade/networks/{name}.toml with another subnet"),
        |p| format!("change the subnet in {}", p.display()),
    );
    match &facts.routes {
        Err(e) => problem(b, format!("cannot read the host's routes: {e}")),
        Ok(routes) => {
            for r in routes {
                // The network's own bridge route is ours; the default route overlaps all.
                if r.iface == def.bridge || r.dest.prefix == 0 || !r.dest.overlaps(def.subnet) {
                    continue;
                }
                problem(
                    b,
                    format!(
                        "the subnet {} of network `{name}` overlaps the host's route `{}`; {where_defined}",
                        def.subnet, r.text
                    ),
                );
            }
        }
    }
    if let Some(v6) = &def.ipv6 {
        if let Some(why) = &facts.ipv6_off {
            problem(
                b,
                format!(
                    "network `{name}` has subnet6 {} but {why}; remove subnet6 from its file or turn IPv6 on",
                    v6.subnet
                ),
            );
        }
        match &facts.routes6 {
            Err(e) => problem(b, format!("cannot read the host's IPv6 routes: {e}")),
            Ok(routes) => {
                for r in routes {
                    if r.iface == def.bridge || r.dest.prefix == 0 || !r.dest.overlaps(v6.subnet) {
                        continue;
                    }
                    problem(
                        b,
                        format!(
                            "the subnet6 {} of network `{name}` overlaps the host's IPv6 route `{}`; change subnet6 in {}",
                            v6.subnet,
                            r.text,
                            def.path.as_ref().map_or("its file".into(), |p| p.display().to_string())
                        ),
                    );
                }
            }
        }
    }
    match &facts.links {
        Err(e) => problem(b, format!("cannot list the host's interfaces: {e}")),
        Ok(links) => {
            if links.iter().any(|(l, bridge)| *l == def.bridge && !bridge) {
                problem(
                    b,
                    format!(
                        "the bridge name `{}` of network `{name}` is taken by an interface that is not a bridge; name another with `bridge =` in the network's file",
                        def.bridge
                    ),
                );
            }
        }
    }
    let address = n.address.as_ref().and_then(|a| {
        let ip: Ipv4Addr = a.value.parse().ok()?; // validation reported a malformed one
        let s = def.subnet;
        let why = if !s.contains(ip) {
            Some(format!(
                "{ip} is outside the subnet {s} of network `{name}`"
            ))
        } else if ip == s.network() || ip == s.broadcast() {
            Some(format!("{ip} is the network or broadcast address of {s}"))
        } else if ip == def.gateway {
            Some(format!("{ip} is the gateway of network `{name}`"))
        } else if facts.leases.contains(&IpAddr::V4(ip)) {
            Some(format!(
                "{ip} is already leased on network `{name}` (see {})",
                lease_dir(&name).display()
            ))
        } else {
            None
        };
        match why {
            Some(msg) => {
                b.err(a, "network.address", msg);
                None
            }
            None => Some(Decided::new(ip, b.at.at(a, "network.address"))),
        }
    });
    let address6 = n.address6.as_ref().and_then(|a| {
        let ip: Ipv6Addr = a.value.parse().ok()?; // validation reported a malformed one
        let why = match &def.ipv6 {
            None => Some(format!(
                "network `{name}` has no IPv6 (no subnet6); {}",
                def.path.as_ref().map_or_else(
                    || "the built-in `default` is IPv4 only: join a network whose file sets subnet6, or remove address6".to_owned(),
                    |p| format!("set subnet6 in {} or remove address6", p.display())
                )
            )),
            Some(v6) if !v6.subnet.contains(ip) => Some(format!(
                "{ip} is outside the subnet6 {} of network `{name}`",
                v6.subnet
            )),
            Some(v6) if ip == v6.subnet.network() => Some(format!(
                "{ip} is the subnet-router anycast address of {}",
                v6.subnet
            )),
            Some(v6) if ip == v6.gateway => {
                Some(format!("{ip} is the IPv6 gateway of network `{name}`"))
            }
            Some(_) if facts.leases.contains(&IpAddr::V6(ip)) => Some(format!(
                "{ip} is already leased on network `{name}` (see {})",
                lease_dir(&name).display()
            )),
            Some(_) => None,
        };
        match why {
            Some(msg) => {
                b.err(a, "network.address6", msg);
                None
            }
            None => Some(Decided::new(ip, b.at.at(a, "network.address6"))),
        }
    });
    let with_v6 = def.ipv6.is_some();
    let mut publish = Vec::new();
    if let Some(list) = &n.publish {
        for spec in &list.value {
            let Ok(pb) = parse_publish(spec) else {
                continue;
            };
            if pb.host_ip == Some(IpAddr::V6(Ipv6Addr::LOCALHOST)) && pb.proto == Proto::Udp {
                // IPv6 has no route_localnet, and the forwarder of [::1] is TCP's: see
                // sandbox/network/forward.rs.
                b.err(
                    list,
                    "network.publish",
                    format!("`{spec}`: UDP cannot be published on ::1: the kernel drops IPv6 packets from or to ::1 on any interface but lo (no NAT of them), and stockade forwards only TCP there; publish on 127.0.0.1 or on another IPv6 address of the host"),
                );
            }
            if pb.host_ip.is_some_and(|h| h.is_ipv6()) && !with_v6 {
                b.err(
                    list,
                    "network.publish",
                    format!("`{spec}`: an IPv6 host address, but network `{name}` has no IPv6 (no subnet6)"),
                );
            }
            match &facts.bound {
                Err(e) => b.err(
                    list,
                    "network.publish",
                    format!("cannot read the host's bound ports: {e}"),
                ),
                Ok(bound) => {
                    let taken = bound.iter().find(|s| clashes(&pb, with_v6, s));
                    if let Some(s) = taken {
                        b.err(
                            list,
                            "network.publish",
                            format!(
                                "`{spec}`: host port {}/{} is already bound on the host (by a socket on {})",
                                pb.host_port, pb.proto, s.ip
                            ),
                        );
                    }
                }
            }
            publish.push(Decided::new(pb, b.at.at(list, "network.publish")));
        }
    }
    let dns = match &n.dns {
        Some(d) => {
            let servers: Vec<IpAddr> = d.value.iter().filter_map(|s| s.parse().ok()).collect();
            for s in servers.iter().filter(|s| s.is_ipv6() && !with_v6) {
                b.err(
                    d,
                    "network.dns",
                    format!("{s} is an IPv6 server, but network `{name}` has no IPv6 (no subnet6): the sandbox could not reach it"),
                );
            }
            Decided::new(servers, b.at.at(d, "network.dns"))
        }
        None => {
            let servers: Vec<IpAddr> = host_dns(&facts).unwrap_or_else(|msg| {
                b.file_err("network.dns", msg);
                Vec::new()
            });
            // Without IPv6 the sandbox reaches IPv4 servers only (as Docker does).
            let servers = servers
                .into_iter()
                .filter(|ip| ip.is_ipv4() || with_v6)
                .collect();
            Decided::new(servers, Provenance::default("network.dns"))
        }
    };
    Some(NetworkPlan {
        network: Decided::new(name.clone(), name_from),
        outbound: match &n.outbound {
            Some(o) => Decided::new(o.value, b.at.at(o, "network.outbound")),
            None => Decided::new(def.outbound, Provenance::default("network.outbound")),
        },
        def,
        address,
        address6,
        publish,
        dns,
        veth: format!("vstk{}", inv.id),
        hostname: n
            .hostname
            .as_ref()
            .map_or_else(|| super::hostname_for(sandbox), |h| h.value.clone()),
        hosts_file: network_dir(&name).join(format!("vstk{}.hosts", inv.id)),
        resolv_file: network_dir(&name).join(format!("vstk{}.resolv.conf", inv.id)),
        state_dir: network_dir(&name),
    })
}

/// Whether a socket bound on the host takes traffic a published port would take: the same
/// port and protocol, on an address the publish covers (no host address: every address of
/// IPv4, and of IPv6 when the network has it). A socket on `::` may take IPv4 too (unless
/// IPV6_V6ONLY, which /proc does not show), and one on `::ffff:a.b.c.d` is IPv4.
fn clashes(pb: &Publish, with_v6: bool, s: &Bound) -> bool {
    if s.proto != pb.proto || s.port != pb.host_port {
        return false;
    }
    let ip = s.ip.to_canonical();
    let dual = s.ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    match pb.host_ip {
        None => ip.is_ipv4() || dual || with_v6,
        Some(h) => {
            (h.is_ipv4() == ip.is_ipv4() && (h == ip || h.is_unspecified() || ip.is_unspecified()))
                || (dual && h.is_ipv4())
        }
    }
}

/// A bridge plan on the built-in `default` network for unit tests elsewhere (nft batches,
/// analyze's checks): outbound as given, these `publish` specs, veth `vstk7`.
#[cfg(test)]
pub(crate) fn test_plan(outbound: bool, publish: &[&str]) -> NetworkPlan {
    let test = Provenance::default("test");
    NetworkPlan {
        network: Decided::new("default".into(), test.clone()),
        def: crate::profile::networks::find("default", &[])
            .unwrap()
            .unwrap(),
        address: None,
        address6: None,
        publish: publish
            .iter()
            .map(|p| {
                Decided::new(
                    crate::profile::networks::parse_publish(p).unwrap(),
                    test.clone(),
                )
            })
            .collect(),
        outbound: Decided::new(outbound, test.clone()),
        dns: Decided::new(Vec::new(), test),
        veth: "vstk7".into(),
        state_dir: network_dir("default"),
        hostname: "test".into(),
        hosts_file: "/run/stockade/networks/default/vstk7.hosts".into(),
        resolv_file: "/run/stockade/networks/default/vstk7.resolv.conf".into(),
    }
}
