//! Named networks and the network values of a profile: what an admin writes, read and checked
//! without the host. A network is defined in `NAME.toml` on the network search path
//! (`$STOCKADE_NETWORK_PATH`, `/etc/stockade/networks`, `/usr/share/stockade/networks`; the
//! first file found wins, then every `NAME.toml.d/*.toml` drop-in of every directory is
//! merged key by key in file-name order, as for profiles); `default` exists without a file.
//! Also here: the `publish` syntax (`[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`) and IPv4 subnets.
//! Nothing here looks at the host's interfaces or routes: the plan checks against those.

use super::problem::{closest, At, Problem, Problems};
use super::source::{with_file, FileId, Origin, SourceMap, Src};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
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
    /// IPv6 subnet (optional).
    subnet6: Option<Src<String>>,
    /// Masquerade outbound traffic by default (default true).
    outbound: Option<Src<bool>>,
    /// MTU of the bridge and the sandboxes' eth0 (default 1500).
    mtu: Option<Src<u32>>,
}

/// The keys a network file may have (those of [`File`]).
const KEYS: &[&str] = &["bridge", "subnet", "gateway", "subnet6", "outbound", "mtu"];

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
            outbound: f.outbound.or(merged.outbound),
            mtu: f.mtu.or(merged.mtu),
        };
    }
    let def = check(name, &merged, files.last(), &mut problems);
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
    if !problems.is_empty() {
        return None;
    }
    Some(NetworkDef {
        name: name.to_owned(),
        bridge,
        subnet: subnet?,
        gateway: gateway?,
        subnet6: merged.subnet6.as_ref().map(|s| s.value.clone()),
        outbound: merged.outbound.as_ref().is_none_or(|o| o.value),
        mtu,
        path: None,
    })
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
