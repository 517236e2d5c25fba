//! The network decisions: which mode the sandbox's network has, and for a bridge which named
//! network it joins, with which address, published ports, outbound NAT and name servers.
//! Everything is checked here, before any side effect, against facts gathered up front: the
//! network's definition, the host's routes (a subnet overlapping one is refused, naming the
//! route), its interfaces (a bridge name taken by another kind of interface), the ports bound
//! on it and the network's leases. Pure: no I/O, no syscalls.
//!
//! How `namespaces.net` maps: `mode = "host"` is `net = false`; `none` and `bridge` are
//! `net = true`. Without `mode`, `net = false` means host and anything else none. Writing
//! both so that they disagree is one error (profile validation).

use super::{Builder, Decided, Invocation, Provenance};
use crate::host::Needs;
use crate::profile::networks::{parse_publish, NetworkDef, Publish};
use crate::profile::schema::or;
use crate::profile::values::NetMode;
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
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
        } else if facts.leases.contains(&ip) {
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
    let mut publish = Vec::new();
    if let Some(list) = &n.publish {
        for spec in &list.value {
            let Ok(pb) = parse_publish(spec) else {
                continue;
            };
            match &facts.bound {
                Err(e) => b.err(
                    list,
                    "network.publish",
                    format!("cannot read the host's bound ports: {e}"),
                ),
                Ok(bound) => {
                    let taken = bound.iter().find(|s| {
                        s.proto == pb.proto
                            && s.port == pb.host_port
                            && (s.ip.is_unspecified()
                                || pb.host_ip.is_none_or(|h| IpAddr::V4(h) == s.ip))
                    });
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
        Some(d) => Decided::new(
            d.value.iter().filter_map(|s| s.parse().ok()).collect(),
            b.at.at(d, "network.dns"),
        ),
        None => {
            let servers = host_dns(&facts).unwrap_or_else(|msg| {
                b.file_err("network.dns", msg);
                Vec::new()
            });
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
