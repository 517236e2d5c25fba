//! Named networks and the network values of a profile: what an admin writes, read and checked
//! without the host. A network is defined in `NAME.toml` on the network search path
//! (`$STOCKADE_NETWORK_PATH`, `/etc/stockade/networks`, `/usr/share/stockade/networks`; the
//! first file found wins, then every `NAME.toml.d/*.toml` drop-in of every directory is
//! merged key by key in file-name order, as for profiles); `default` exists without a file.
//! Also here: the `publish` syntax (`[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`) and IPv4 subnets.
//! Nothing here looks at the host's interfaces or routes: the plan checks against those.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
    /// None: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_port, self.port, self.proto)
    }
}

/// Parses `[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]` as Docker's `-p` writes it.
pub fn parse_publish(text: &str) -> Result<Publish, String> {
    let form = "expected \"[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]\" such as \"127.0.0.1:8080:80/tcp\"";
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
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, port) = match parts.as_slice() {
        [h, p] => (None, *h, *p),
        [ip, h, p] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("`{text}`: `{ip}` is not an IPv4 address; {form}"))?;
            (Some(ip), *h, *p)
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
        host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
        host_port: number(host_port)?,
        port: number(port)?,
        proto,
    })
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
    /// An IPv6 subnet, as written (recorded; addresses are IPv4 only for now).
    pub subnet6: Option<String>,
    /// Whether sandboxes masquerade to the host's default route unless a profile says.
    pub outbound: bool,
    pub mtu: u32,
    /// The file that defined it; None for the built-in `default`.
    pub path: Option<PathBuf>,
}

/// One network file's keys, each optional so drop-ins can set one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Bridge interface name (default "stk-NAME", at most 15 characters).
    bridge: Option<String>,
    /// IPv4 subnet, required for every network but `default`.
    subnet: Option<String>,
    /// Gateway address (default: the subnet's first address).
    gateway: Option<String>,
    /// IPv6 subnet (optional).
    subnet6: Option<String>,
    /// Masquerade outbound traffic by default (default true).
    outbound: Option<bool>,
    /// MTU of the bridge and the sandboxes' eth0 (default 1500).
    mtu: Option<u32>,
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
/// wrong in which file. Ok(None): no such network.
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
    let mut merged = File::default();
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
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: File = toml::from_str(&text).map_err(|e| file_error(path, &text, &e))?;
        merged = File {
            bridge: f.bridge.or(merged.bridge),
            subnet: f.subnet.or(merged.subnet),
            gateway: f.gateway.or(merged.gateway),
            subnet6: f.subnet6.or(merged.subnet6),
            outbound: f.outbound.or(merged.outbound),
            mtu: f.mtu.or(merged.mtu),
        };
    }
    let at = |key: &str| {
        format!(
            "{}: {key}",
            files
                .last()
                .map_or("built-in network `default`".into(), |p| p
                    .display()
                    .to_string())
        )
    };
    let subnet = match (&merged.subnet, name) {
        (Some(s), _) => Subnet::parse(s).map_err(|e| format!("{}: {e}", at("subnet")))?,
        (None, "default") => Subnet::parse(DEFAULT_SUBNET).expect("the default subnet parses"),
        (None, _) => {
            return Err(format!(
                "{}: missing: a network needs `subnet = \"10.90.0.0/24\"`",
                at("subnet")
            ))
        }
    };
    let gateway = match &merged.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| format!("{}: `{g}` is not an IPv4 address", at("gateway")))?;
            if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(format!(
                    "{}: {ip} is not a host address of the subnet {subnet}",
                    at("gateway")
                ));
            }
            ip
        }
        None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
    };
    let bridge = match merged.bridge {
        Some(b) => b,
        None if name == "default" => DEFAULT_BRIDGE.into(),
        None => format!("stk-{name}"),
    };
    if bridge.is_empty()
        || bridge.len() > 15
        || bridge.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "{}: `{bridge}` is not an interface name (at most 15 characters, no `/`, `:` or spaces)",
            at("bridge")
        ));
    }
    let mtu = merged.mtu.unwrap_or(1500);
    if !(576..=65535).contains(&mtu) {
        return Err(format!("{}: {mtu} is outside 576-65535", at("mtu")));
    }
    Ok(Some(NetworkDef {
        name: name.to_owned(),
        bridge,
        subnet,
        gateway,
        subnet6: merged.subnet6,
        outbound: merged.outbound.unwrap_or(true),
        mtu,
        path: main,
    }))
}

/// `file:line:col: message` for a TOML error in a network file.
fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let (line, col) = e.span().map_or((1, 1), |s| {
        let before = &text[..s.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    });
    format!("{}:{line}:{col}: {}", path.display(), e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_dockers() {
        let p = parse_publish("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
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
}
