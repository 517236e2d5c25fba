//! Named networks and the network values of a profile: what an admin writes, read and checked
//! without the host. A network is defined in `NAME.toml` on the network search path
//! (`$STOCKADE_NETWORK_PATH`, `/etc/stockade/networks`, `/usr/share/stockade/networks`; the
//! first file found wins, then every `NAME.toml.d/*.toml` drop-in of every directory is
//! merged key by key in file-name order, as for profiles); `default` exists without a file.
//! Also here: the `publish` syntax (`[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`, an IPv6 host
//! address in brackets) and IPv4 and IPv6 subnets. Nothing here looks at the host's
//! interfaces or routes: the plan checks against those.

use super::problem::{closest, At, Problem, Problems};
use super::source::{with_file, FileId, Origin, SourceMap, Src};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// An IPv4 subnet, `ADDRESS/PREFIX`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let bad = || format!("`{text}` is not an IPv4 subnet such as \"10.89.0.0/24\"");
        let (a, p) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "`{text}`: the prefix must be 8 to 30 (room for a gateway and sandboxes)"
            ));
        }
        let s = Subnet { addr, prefix };
        if s.network() != addr {
            return Err(format!(
                "`{text}` has host bits set; the subnet is {}/{prefix}",
                s.network()
            ));
        }
        Ok(s)
    }

    pub fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(self, other: Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The addresses a host in the subnet may have (without network and broadcast).
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.network()) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The prefix lengths an IPv6 subnet may have: a /64 is what one link usually gets (and what
/// Docker and podman hand out); /120 still leaves 255 addresses for a gateway and sandboxes.
pub const PREFIX6: std::ops::RangeInclusive<u8> = 64..=120;

/// An IPv6 subnet, `ADDRESS/PREFIX`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    pub fn parse(text: &str) -> Result<Subnet6, String> {
        let bad = || format!("`{text}` is not an IPv6 subnet such as \"fd89::/64\"");
        let (a, p) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !PREFIX6.contains(&prefix) {
            return Err(format!(
                "`{text}`: the prefix must be {} to {} (a /64 is usual; /120 leaves 255 addresses)",
                PREFIX6.start(),
                PREFIX6.end()
            ));
        }
        let s = Subnet6 { addr, prefix };
        if s.network() != addr {
            return Err(format!(
                "`{text}` has host bits set; the subnet is {}/{prefix}",
                s.network()
            ));
        }
        // Addresses a bridge's sandboxes cannot have: these ranges mean something else.
        let special = [
            (
                "::/8",
                "the unspecified, loopback and IPv4-mapped range ::/8",
            ),
            (
                "fe80::/10",
                "link-local (fe80::/10, every interface has its own)",
            ),
            ("ff00::/8", "multicast (ff00::/8)"),
        ];
        for (range, what) in special {
            let (a, p) = range.split_once('/').expect("a range");
            let r = Subnet6 {
                addr: a.parse().expect("an address"),
                prefix: p.parse().expect("a prefix"),
            };
            if r.overlaps(s) {
                return Err(format!(
                    "`{text}` is {what}; use a unique local prefix such as \"fd89::/64\" or a global one routed to this host"
                ));
            }
        }
        Ok(s)
    }

    pub fn mask(self) -> u128 {
        mask6(self.prefix)
    }

    pub fn network(self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    /// The subnet's last address (IPv6 has no broadcast address: it is a host's).
    pub fn last(self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | !self.mask())
    }

    pub fn contains(self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.network())
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(self, other: Subnet6) -> bool {
        let m = mask6(self.prefix.min(other.prefix));
        u128::from(self.addr) & m == u128::from(other.addr) & m
    }

    /// The addresses a host in the subnet may have, in order: all but the first, which is
    /// the subnet-router anycast address (RFC 4291).
    pub fn hosts(self) -> impl Iterator<Item = Ipv6Addr> {
        (u128::from(self.network()) + 1..=u128::from(self.last())).map(Ipv6Addr::from)
    }
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One published port: traffic to HOST_IP:HOST_PORT goes to the sandbox's PORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// None: every address of the host, of both families when the network has IPv6.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(f, "{}:{}/{}", self.host_port, self.port, self.proto)
    }
}

impl Publish {
    /// Whether traffic to one host address and port could be meant for both: the same port
    /// and protocol on addresses that overlap (none given is every address of both
    /// families; 0.0.0.0 and :: every address of theirs).
    pub fn collides(&self, other: &Publish) -> bool {
        self.host_port == other.host_port
            && self.proto == other.proto
            && match (self.host_ip, other.host_ip) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => {
                    a.is_ipv4() == b.is_ipv4()
                        && (a == b || a.is_unspecified() || b.is_unspecified())
                }
            }
    }
}

/// Parses `[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]` as Docker's `-p` writes it; an IPv6 host
/// address is written in brackets, `[::1]:8080:80`.
pub fn parse_publish(text: &str) -> Result<Publish, String> {
    let form = "expected \"[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]\" such as \"127.0.0.1:8080:80/tcp\" or \"[::1]:8080:80\"";
    let (ports, proto) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p, Proto::Tcp),
        Some((p, "udp")) => (p, Proto::Udp),
        Some((_, other)) => {
            return Err(format!(
                "`{text}`: unknown protocol `{other}`; use tcp or udp"
            ))
        }
        None => (text, Proto::Tcp),
    };
    // An IPv6 host address has colons of its own: it comes in brackets.
    let (host_ip, ports) = match ports.strip_prefix('[') {
        Some(rest) => {
            let (ip, rest) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`; {form}"))?;
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| format!("`{text}`: `{ip}` is not an IPv6 address; {form}"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| format!("`{text}` is not a port mapping: {form}"))?;
            (Some(IpAddr::V6(ip)), rest)
        }
        None => (None, ports),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, port) = match (host_ip, parts.as_slice()) {
        (None, [h, p]) => (None, *h, *p),
        (Some(ip), [h, p]) => (Some(ip), *h, *p),
        (None, [ip, h, p]) => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| {
                format!("`{text}`: `{ip}` is not an IPv4 address (write an IPv6 one in brackets); {form}")
            })?;
            (Some(IpAddr::V4(ip)), *h, *p)
        }
        _ => return Err(format!("`{text}` is not a port mapping: {form}")),
    };
    let number = |p: &str| -> Result<u16, String> {
        let n: u64 = p
            .parse()
            .map_err(|_| format!("`{text}`: `{p}` is not a port number; {form}"))?;
        match u16::try_from(n) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("`{text}`: port {n} is outside 1-65535")),
        }
    };
    Ok(Publish {
        host_ip,
        host_port: number(host_port)?,
        port: number(port)?,
        proto,
    })
}

/// A network's IPv6 half: its subnet and the bridge's address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Net {
    pub subnet: Subnet6,
    /// The bridge's own IPv6 address: the sandboxes' default IPv6 route.
    pub gateway: Ipv6Addr,
}

/// A network's definition, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    /// The bridge interface on the host.
    pub bridge: String,
    pub subnet: Subnet,
    /// The bridge's own address: the sandboxes' default route.
    pub gateway: Ipv4Addr,
    /// IPv6 beside IPv4 when the network's file sets `subnet6`; None: IPv4 only.
    pub ipv6: Option<Ipv6Net>,
    /// Whether sandboxes masquerade to the host's default route unless a profile says.
    pub outbound: bool,
    pub mtu: u32,
    /// The file that defined it; None for the built-in `default`.
    pub path: Option<PathBuf>,
}

/// One network file's keys, each optional so drop-ins can set one; each value keeps where
/// it was written, so a problem names `file:line:col: key`.
#[derive(Debug, Default, Deserialize)]
struct File {
    /// Bridge interface name (default "stk-NAME", at most 15 characters).
    bridge: Option<Src<String>>,
    /// IPv4 subnet, required for every network but `default`.
    subnet: Option<Src<String>>,
    /// Gateway address (default: the subnet's first address).
    gateway: Option<Src<String>>,
    /// IPv6 subnet (optional; /64 to /120).
    subnet6: Option<Src<String>>,
    /// IPv6 gateway address (default: the subnet6's first address, `::1`).
    gateway6: Option<Src<String>>,
    /// Masquerade outbound traffic by default (default true).
    outbound: Option<Src<bool>>,
    /// MTU of the bridge and the sandboxes' eth0 (default 1500).
    mtu: Option<Src<u32>>,
}

/// The keys a network file may have (those of [`File`]).
const KEYS: &[&str] = &[
    "bridge", "subnet", "gateway", "subnet6", "gateway6", "outbound", "mtu",
];

/// The longest interface name the kernel takes: IFNAMSIZ (16) less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// Why `name` cannot name a network interface, if it cannot (the kernel's
/// `dev_valid_name`: at most [`IFNAME_MAX`] bytes, not `.` or `..`, no `/`, `:` or space).
pub fn ifname_problem(name: &str) -> Option<String> {
    let why = if name.is_empty() {
        "an interface name cannot be empty".to_owned()
    } else if name.len() > IFNAME_MAX {
        format!(
            "`{name}` has {} bytes; an interface name has at most {IFNAME_MAX} (IFNAMSIZ)",
            name.len()
        )
    } else if name == "." || name == ".." {
        format!("`{name}` cannot name an interface")
    } else if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        format!(
            "`{}` cannot be in an interface name (no `/`, `:` or spaces)",
            c.escape_default()
        )
    } else {
        return None;
    };
    Some(why)
}

/// The built-in `default` network's subnet.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/24";
/// The built-in `default` network's bridge.
pub const DEFAULT_BRIDGE: &str = "stockade0";

/// Where network definitions are looked for, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("STOCKADE_NETWORK_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.push("/etc/stockade/networks".into());
    dirs.push("/usr/share/stockade/networks".into());
    dirs
}

/// A valid network name: it names files and nftables chains.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (!ok).then(|| {
        format!("`{name}` is not a valid network name (letters, digits, `-`, `_`; at most 32)")
    })
}

/// Finds and reads network `name`; the error says which files were looked at or what is
/// wrong in which file (`file:line:col: key: message`). Ok(None): no such network.
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<Option<NetworkDef>, String> {
    if let Some(why) = name_problem(name) {
        return Err(why);
    }
    let main = dirs
        .iter()
        .map(|d| d.join(format!("{name}.toml")))
        .find(|p| p.is_file());
    if main.is_none() && name != "default" {
        return Ok(None);
    }
    let mut files: Vec<PathBuf> = main.iter().cloned().collect();
    let mut dropins: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join(format!("{name}.toml.d"))).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    dropins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files.extend(dropins);
    let mut merged = File::default();
    let mut map = SourceMap::default();
    let mut problems = Problems::default();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let id = map.add(path.clone(), text.clone());
        let Some(f) = parse_file(id, &text, &mut problems) else {
            continue;
        };
        merged = File {
            bridge: f.bridge.or(merged.bridge),
            subnet: f.subnet.or(merged.subnet),
            gateway: f.gateway.or(merged.gateway),
            subnet6: f.subnet6.or(merged.subnet6),
            gateway6: f.gateway6.or(merged.gateway6),
            outbound: f.outbound.or(merged.outbound),
            mtu: f.mtu.or(merged.mtu),
        };
    }
    let mut def = None;
    // A file that did not parse has keys unread: "missing" would be a second, false, error.
    if problems.is_empty() {
        def = check(name, &merged, files.last(), &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems.render(&map).join("; "));
    }
    Ok(def.map(|mut d| {
        d.path = main;
        d
    }))
}

/// One network file, parsed; its problems (TOML syntax, unknown keys with the closest
/// known one, values of the wrong type) go to `problems`, each at its place.
fn parse_file(id: FileId, text: &str, problems: &mut Problems) -> Option<File> {
    let at = |span: Option<std::ops::Range<usize>>| At::Span(Origin::new(id, span.unwrap_or(0..0)));
    let table = match toml::de::DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(at(e.span()), None, e.message().trim()));
            return None;
        }
    };
    // Reported here, with the closest known key; serde then reads the known ones.
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (k, _) in entries {
        let key = k.get_ref().as_ref();
        if !KEYS.contains(&key) {
            problems.push(
                Problem::at(
                    Origin::new(id, k.span()),
                    key,
                    "unknown key in a network file",
                )
                .suggest(closest(key, KEYS.iter().copied())),
            );
        }
    }
    let parsed = with_file(id, || {
        <File as Deserialize>::deserialize(toml::de::Deserializer::from(table.clone()))
    });
    match parsed {
        Ok(f) => Some(f),
        Err(e) => {
            // The key whose value serde refused (a string where the MTU's number belongs).
            let key = e.span().and_then(|s| {
                table.get_ref().iter().find_map(|(k, v)| {
                    let span = v.span();
                    (span.start <= s.start && s.end <= span.end).then(|| k.get_ref().to_string())
                })
            });
            problems.push(Problem::new(at(e.span()), key, e.message().trim()));
            None
        }
    }
}

/// The merged keys checked and defaults applied; None when a problem was found (each goes
/// to `problems`, at the value that has it). `last` is the last file read, where a missing
/// key is reported.
fn check(
    name: &str,
    merged: &File,
    last: Option<&PathBuf>,
    problems: &mut Problems,
) -> Option<NetworkDef> {
    let missing = |key: &str, message: String| {
        let at = last.map_or(At::Nowhere, |p| At::File(p.clone()));
        Problem::new(at, Some(key.to_owned()), message)
    };
    let subnet = match (&merged.subnet, name) {
        (Some(s), _) => Subnet::parse(s)
            .map_err(|e| problems.push(Problem::at(s.origin, "subnet", e)))
            .ok(),
        (None, "default") => {
            Some(Subnet::parse(DEFAULT_SUBNET).expect("the default subnet parses"))
        }
        (None, _) => {
            problems.push(missing(
                "subnet",
                "missing: a network needs `subnet = \"10.90.0.0/24\"`".into(),
            ));
            None
        }
    };
    let gateway = match (&merged.gateway, subnet) {
        (Some(g), subnet) => match g.parse::<Ipv4Addr>() {
            Err(_) => {
                problems.push(Problem::at(
                    g.origin,
                    "gateway",
                    format!("`{}` is not an IPv4 address", g.value),
                ));
                None
            }
            Ok(ip) => match subnet {
                Some(s) if !s.contains(ip) || ip == s.network() || ip == s.broadcast() => {
                    problems.push(Problem::at(
                        g.origin,
                        "gateway",
                        format!("{ip} is not a host address of the subnet {s}"),
                    ));
                    None
                }
                _ => Some(ip),
            },
        },
        (None, Some(s)) => Some(Ipv4Addr::from(u32::from(s.network()) + 1)),
        (None, None) => None,
    };
    let bridge = match &merged.bridge {
        Some(b) => {
            if let Some(why) = ifname_problem(b) {
                problems.push(Problem::at(b.origin, "bridge", why));
            }
            b.value.clone()
        }
        None if name == "default" => DEFAULT_BRIDGE.into(),
        None => format!("stk-{name}"),
    };
    if merged.bridge.is_none() {
        if let Some(why) = ifname_problem(&bridge) {
            problems.push(missing(
                "bridge",
                format!("the default bridge name {why}; set `bridge =` to a shorter one"),
            ));
        }
    }
    let mtu = merged.mtu.as_ref().map_or(1500, |m| m.value);
    if let Some(m) = &merged.mtu {
        if !(576..=65535).contains(&m.value) {
            problems.push(Problem::at(
                m.origin,
                "mtu",
                format!("{} is outside 576-65535", m.value),
            ));
        }
    }
    let ipv6 = ipv6(merged, problems);
    if ipv6.is_some() && mtu < 1280 {
        if let Some(m) = &merged.mtu {
            problems.push(Problem::at(
                m.origin,
                "mtu",
                format!(
                    "{} is below 1280, the least IPv6 allows (the network has subnet6)",
                    m.value
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return None;
    }
    Some(NetworkDef {
        name: name.to_owned(),
        bridge,
        subnet: subnet?,
        gateway: gateway?,
        ipv6,
        outbound: merged.outbound.as_ref().is_none_or(|o| o.value),
        mtu,
        path: None,
    })
}

/// The network's IPv6 half from `subnet6` and `gateway6`; None without subnet6 or when a
/// problem was found (it goes to `problems`).
fn ipv6(merged: &File, problems: &mut Problems) -> Option<Ipv6Net> {
    let Some(s) = &merged.subnet6 else {
        if let Some(g) = &merged.gateway6 {
            problems.push(Problem::at(
                g.origin,
                "gateway6",
                "set without `subnet6`: the IPv6 gateway is an address of the network's IPv6 subnet",
            ));
        }
        return None;
    };
    let subnet = Subnet6::parse(s)
        .map_err(|e| problems.push(Problem::at(s.origin, "subnet6", e)))
        .ok()?;
    let gateway = match &merged.gateway6 {
        None => Ipv6Addr::from(u128::from(subnet.network()) + 1),
        Some(g) => {
            let Ok(ip) = g.parse::<Ipv6Addr>() else {
                problems.push(Problem::at(
                    g.origin,
                    "gateway6",
                    format!("`{}` is not an IPv6 address", g.value),
                ));
                return None;
            };
            if !subnet.contains(ip) || ip == subnet.network() {
                problems.push(Problem::at(
                    g.origin,
                    "gateway6",
                    format!("{ip} is not a host address of the subnet6 {subnet}"),
                ));
                return None;
            }
            ip
        }
    };
    Some(Ipv6Net { subnet, gateway })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_dockers() {
        let p = parse_publish("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(p.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!((p.host_port, p.port, p.proto), (8080, 80, Proto::Tcp));
        let p = parse_publish("5353:53/udp").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.port, p.proto),
            (None, 5353, 53, Proto::Udp)
        );
        assert_eq!(parse_publish("6380:6379").unwrap().proto, Proto::Tcp);
        assert!(parse_publish("0:80")
            .unwrap_err()
            .contains("outside 1-65535"));
        assert!(parse_publish("70000:80")
            .unwrap_err()
            .contains("outside 1-65535"));
        assert!(parse_publish("80")
            .unwrap_err()
            .contains("not a port mapping"));
        assert!(parse_publish("a:80")
            .unwrap_err()
            .contains("not a port number"));
        assert!(parse_publish("80:80/sctp").unwrap_err().contains("sctp"));
        assert!(parse_publish("1.2.3:80:80").unwrap_err().contains("IPv4"));
    }

    #[test]
    fn publish_specs_take_an_ipv6_host_address_in_brackets() {
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!((p.host_port, p.port, p.proto), (8080, 80, Proto::Tcp));
        assert_eq!(p.to_string(), "[::1]:8080:80/tcp");
        let p = parse_publish("[fd00::1]:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some("fd00::1".parse().unwrap()));
        assert_eq!(p.proto, Proto::Udp);
        // 0.0.0.0 and :: are every address of their family, as with Docker's -p.
        let any4 = parse_publish("0.0.0.0:8080:80").unwrap();
        let any6 = parse_publish("[::]:8080:80").unwrap();
        assert!(any4.host_ip.unwrap().is_ipv4() && any6.host_ip.unwrap().is_ipv6());
        for (bad, want) in [
            ("[::1:8080:80", "without `]`"),
            ("[::1]8080:80", "not a port mapping"),
            ("[10.0.0.1]:8080:80", "not an IPv6 address"),
            ("[::1]:80", "not a port mapping"),
            ("::1:8080:80", "not a port mapping"),
            ("[::1]:0:80", "outside 1-65535"),
        ] {
            let e = parse_publish(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn publishes_collide_only_on_addresses_that_overlap() {
        let p = |s: &str| parse_publish(s).unwrap();
        // The two families' loopback addresses are apart; every address takes both.
        assert!(!p("127.0.0.1:8080:80").collides(&p("[::1]:8080:80")));
        assert!(p("8080:80").collides(&p("[::1]:8080:81")));
        assert!(p("[::]:8080:80").collides(&p("[::1]:8080:81")));
        assert!(!p("0.0.0.0:8080:80").collides(&p("[::1]:8080:81")));
        assert!(!p("[::1]:8080:80").collides(&p("[::1]:8080:80/udp")));
        assert!(p("[::1]:8080:80").collides(&p("[::1]:8080:81")));
    }

    #[test]
    fn ipv6_subnets_are_checked_and_know_their_hosts() {
        let s = Subnet6::parse("fd89::/64").unwrap();
        assert!(s.contains("fd89::ffff:1".parse().unwrap()));
        assert!(!s.contains("fd89:0:0:1::1".parse().unwrap()));
        let mut h = s.hosts();
        assert_eq!(h.next(), Some("fd89::1".parse().unwrap()));
        assert_eq!(h.next(), Some("fd89::2".parse().unwrap()));
        let small = Subnet6::parse("fd89::100/120").unwrap();
        assert_eq!(small.hosts().count(), 255);
        assert_eq!(small.hosts().last(), Some("fd89::1ff".parse().unwrap()));
        assert!(s.overlaps(Subnet6::parse("fd89::/120").unwrap()));
        assert!(s.overlaps(Subnet6 {
            addr: "fd00::".parse().unwrap(),
            prefix: 8
        }));
        assert!(!s.overlaps(Subnet6::parse("fd89:0:0:1::/64").unwrap()));
        for (bad, want) in [
            ("fd89::", "is not an IPv6 subnet"),
            ("10.0.0.0/64", "is not an IPv6 subnet"),
            ("fd89::/x", "is not an IPv6 subnet"),
            ("fd89::/48", "the prefix must be 64 to 120"),
            ("fd89::/124", "the prefix must be 64 to 120"),
            ("fd89::1/64", "host bits set; the subnet is fd89::/64"),
            ("fe80::/64", "link-local"),
            ("ff02::/64", "multicast"),
            ("::/64", "unspecified"),
        ] {
            let e = Subnet6::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn an_ipv6_network_is_read_with_its_gateway_and_bad_values_name_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().to_owned()];
        // The built-in default stays IPv4 only, as Docker's.
        assert_eq!(find("default", &dirs).unwrap().unwrap().ipv6, None);
        let w = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
        w(
            "v6.toml",
            "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\n",
        );
        let v6 = find("v6", &dirs).unwrap().unwrap().ipv6.unwrap();
        assert_eq!(v6.subnet.to_string(), "fd89::/64");
        assert_eq!(v6.gateway, "fd89::1".parse::<Ipv6Addr>().unwrap());
        w(
            "gw6.toml",
            "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\ngateway6 = \"fd89::fe\"\n",
        );
        let v6 = find("gw6", &dirs).unwrap().unwrap().ipv6.unwrap();
        assert_eq!(v6.gateway, "fd89::fe".parse::<Ipv6Addr>().unwrap());
        // A drop-in adds IPv6 to a network, and its errors name the drop-in's line.
        std::fs::create_dir(d.path().join("v6.toml.d")).unwrap();
        w(
            "v6.toml.d/x.toml",
            "mtu = 1400\n\nsubnet6 = \"fd89::/60\"\n",
        );
        let e = find("v6", &dirs).unwrap_err();
        assert!(
            e.contains("v6.toml.d/x.toml:3:11: subnet6: `fd89::/60`: the prefix must be 64 to 120"),
            "{e}"
        );
        for (text, want) in [
            (
                "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::1/64\"\n",
                "bad.toml:2:11: subnet6: `fd89::1/64` has host bits set",
            ),
            (
                "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\ngateway6 = \"fd90::1\"\n",
                "bad.toml:3:12: gateway6: fd90::1 is not a host address of the subnet6 fd89::/64",
            ),
            (
                "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\ngateway6 = \"10.90.0.1\"\n",
                "bad.toml:3:12: gateway6: `10.90.0.1` is not an IPv6 address",
            ),
            (
                "subnet = \"10.90.0.0/24\"\ngateway6 = \"fd89::1\"\n",
                "bad.toml:2:12: gateway6: set without `subnet6`",
            ),
            (
                "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\nmtu = 1000\n",
                "bad.toml:3:7: mtu: 1000 is below 1280",
            ),
            (
                "subnet = \"10.90.0.0/24\"\nsubnet6 = 64\n",
                "bad.toml:2:11: subnet6: invalid type",
            ),
            // The IPv4 keys name their line too.
            (
                "\nsubnet = \"10.90.0.0/33\"\n",
                "bad.toml:2:10: subnet: `10.90.0.0/33`",
            ),
        ] {
            w("bad.toml", text);
            let e = find("bad", &dirs).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn subnets_know_their_hosts_and_overlaps() {
        let s = Subnet::parse("10.89.0.0/24").unwrap();
        assert!(s.contains("10.89.0.200".parse().unwrap()));
        assert!(!s.contains("10.89.1.1".parse().unwrap()));
        assert_eq!(s.hosts().count(), 254);
        assert!(s.overlaps(Subnet::parse("10.0.0.0/8").unwrap()));
        assert!(!s.overlaps(Subnet::parse("10.90.0.0/24").unwrap()));
        assert!(Subnet::parse("10.89.0.1/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(Subnet::parse("10.89.0.0/31").is_err());
    }

    #[test]
    fn networks_are_found_merged_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().to_owned()];
        let def = find("default", &dirs).unwrap().unwrap();
        assert_eq!(
            (def.bridge.as_str(), def.gateway),
            ("stockade0", Ipv4Addr::new(10, 89, 0, 1))
        );
        assert_eq!(find("other", &dirs).unwrap(), None);
        std::fs::write(d.path().join("lab.toml"), "subnet = \"10.90.0.0/24\"\n").unwrap();
        std::fs::create_dir(d.path().join("lab.toml.d")).unwrap();
        std::fs::write(d.path().join("lab.toml.d/mtu.toml"), "mtu = 1400\n").unwrap();
        let lab = find("lab", &dirs).unwrap().unwrap();
        assert_eq!((lab.bridge.as_str(), lab.mtu), ("stk-lab", 1400));
        std::fs::write(
            d.path().join("bad.toml"),
            "subnet = \"10.90.0.0/24\"\nbrige = \"x\"\n",
        )
        .unwrap();
        let e = find("bad", &dirs).unwrap_err();
        assert!(e.contains("bad.toml:2:1") && e.contains("brige"), "{e}");
        std::fs::write(
            d.path().join("gw.toml"),
            "subnet = \"10.91.0.0/24\"\ngateway = \"10.92.0.1\"\n",
        )
        .unwrap();
        assert!(find("gw", &dirs).unwrap_err().contains("gateway"));
        assert!(find("../x", &dirs).is_err());
    }

    /// Writes `body` as network `name` in `dir` and returns the error of finding it.
    fn error_of(dir: &std::path::Path, name: &str, body: &str) -> String {
        std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
        find(name, &[dir.to_owned()]).unwrap_err()
    }

    #[test]
    fn network_file_problems_name_file_line_column_and_key() {
        let d = tempfile::tempdir().unwrap();
        let p = |name: &str| d.path().join(format!("{name}.toml")).display().to_string();
        let e = error_of(d.path(), "a", "subnet = \"10.90.0/24\"\n");
        assert_eq!(
            e,
            format!(
                "{}:1:10: subnet: `10.90.0/24` is not an IPv4 subnet such as \"10.89.0.0/24\"",
                p("a")
            )
        );
        let e = error_of(
            d.path(),
            "b",
            "subnet = \"10.90.0.0/24\"\ngateway = \"10.91.0.1\"\n",
        );
        assert_eq!(
            e,
            format!(
                "{}:2:11: gateway: 10.91.0.1 is not a host address of the subnet 10.90.0.0/24",
                p("b")
            )
        );
        let e = error_of(
            d.path(),
            "c",
            "subnet = \"10.90.0.0/24\"\nbridge = \"br-far-too-long-x\"\n",
        );
        assert_eq!(
            e,
            format!(
                "{}:2:10: bridge: `br-far-too-long-x` has 17 bytes; an interface name has at most 15 (IFNAMSIZ)",
                p("c")
            )
        );
        let e = error_of(
            d.path(),
            "d",
            "subnet = \"10.90.0.0/24\"\nbridge = \"br/0\"\n",
        );
        assert!(
            e.starts_with(&format!("{}:2:10: bridge: `/` cannot be", p("d"))),
            "{e}"
        );
        let e = error_of(d.path(), "e", "subnet = \"10.90.0.0/24\"\n\nmtu = 70000\n");
        assert_eq!(
            e,
            format!("{}:3:7: mtu: 70000 is outside 576-65535", p("e"))
        );
        let e = error_of(
            d.path(),
            "f",
            "subnet = \"10.90.0.0/24\"\n  brige = \"x\"\n",
        );
        assert_eq!(
            e,
            format!(
                "{}:2:3: brige: unknown key in a network file (did you mean `bridge`?)",
                p("f")
            )
        );
        let e = error_of(d.path(), "g", "subnet = \"10.90.0.0/24\"\nmtu = \"big\"\n");
        assert!(e.starts_with(&format!("{}:2:7: mtu: ", p("g"))), "{e}");
        // Every problem at once, in the order written; a missing key names the file.
        let e = error_of(d.path(), "h", "gateway = \"x\"\nmtu = 1\n");
        assert_eq!(
            e,
            format!(
                "{0}: subnet: missing: a network needs `subnet = \"10.90.0.0/24\"`; {0}:1:11: gateway: `x` is not an IPv4 address; {0}:2:7: mtu: 1 is outside 576-65535",
                p("h")
            )
        );
        // A name too long for a bridge of its own.
        let e = error_of(d.path(), "averylongname", "subnet = \"10.90.0.0/24\"\n");
        assert!(
            e.contains("bridge: the default bridge name `stk-averylongname` has 17 bytes"),
            "{e}"
        );
        // A drop-in's problem names the drop-in.
        std::fs::write(d.path().join("i.toml"), "subnet = \"10.90.0.0/24\"\n").unwrap();
        std::fs::create_dir(d.path().join("i.toml.d")).unwrap();
        std::fs::write(d.path().join("i.toml.d/x.toml"), "mtu = 10\n").unwrap();
        let e = find("i", &[d.path().to_owned()]).unwrap_err();
        assert!(e.contains("i.toml.d/x.toml:1:7: mtu: 10 is outside"), "{e}");
    }

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        for ok in ["stockade0", "br-lab", &"x".repeat(15)] {
            assert_eq!(ifname_problem(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a:b", "a/b", &"x".repeat(16), "tab\t"] {
            assert!(ifname_problem(bad).is_some(), "{bad:?}");
        }
    }
}
