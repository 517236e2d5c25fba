//! The sandbox's rules, in stockade's own nftables table `inet stockade` (no other table is
//! touched: Docker's, firewalld's and an admin's rules stay as they are). One `inet` table so
//! IPv4 and IPv6 rules live side by side; IPv4 matches are written with `ip` payloads, and
//! every helper that writes an address match takes a [`Family`].
//!
//! Shape: four shared base chains (`prerouting`, `output`, `postrouting`, `forward`) whose
//! only rules look the packet up in verdict maps; two regular chains per network, named
//! after its bridge (`net-stockade0-post`, `-fwd`), holding what all its sandboxes share;
//! and one chain per sandbox that publishes ports, named after its veth (`vstk123-dnat`):
//!
//! - `publish` (protocol . host port: every host address, of both families when the sandbox
//!   has IPv6, or of one for 0.0.0.0 and [::]) and `publish_at4`/`publish_at6` (host address
//!   . protocol . port) lead the nat prerouting and output hooks to the sandbox's DNAT chain,
//!   whose rules DNAT each family to the sandbox's address of that family;
//! - `net_post` and `net_fwd` (a bridge's name, looked up as output and as input
//!   interface) lead postrouting and forward to its network's chains, whose rules match the
//!   network's subnets (IPv4, and IPv6 with subnet6): the masquerade of the subnet to
//!   elsewhere (when the network's default `outbound` is true), the filter that drops new
//!   connections into the subnet from outside the bridge unless DNATed, and the masquerade
//!   of DNATed traffic from the host's loopback or the subnet itself (hairpin);
//! - a set per network and family (`net-stockade0-odd4`) of the addresses of its sandboxes
//!   whose `outbound` is not the network's: left out of its masquerade and dropped leaving
//!   the bridge (default true), or the only ones masqueraded and let out (default false).
//!
//! Why per network: what differs between the sandboxes of one network is their published
//! ports and, rarely, `outbound`; the rest is a function of the subnet. Written once per
//! network, a sandbox without published ports and with its network's `outbound` has nothing
//! of its own in the table, and its start and stop need no nft run at all when its network
//! has other sandboxes (each run costs 20-30 ms: nft's exit waits for an RCU grace period).
//! Why the bridge's name as the maps' key and not the subnet: a subnet key needs an
//! interval map, which nft 1.0.6 cannot fill in the transaction that creates it.
//!
//! Why verdict maps and not per-sandbox base chains: a base chain is a hook registration, and
//! every packet walks every base chain on its hook, so N sandboxes cost N evaluations per
//! packet and a start or stop registers and unregisters four hooks. With maps a packet costs
//! one hash lookup per map whatever the number of sandboxes or networks, and a start or stop
//! adds or deletes elements and regular chains only. Why maps rather than one `jump` rule
//! per sandbox in the base chains: deleting a rule needs its handle, which only listing the
//! table tells; an element is deleted by its key, which the plan names.
//!
//! The network's first sandbox adds, in one `nft -j -f -` transaction, the table, the maps
//! and the base chains idempotently (the base chains are flushed and their few fixed rules
//! written again, so a start never duplicates them and repairs them if someone changed
//! them), the network's chains, sets and elements, and its own. A marker file in the
//! network's state directory (mod.rs) tells later sandboxes that the network's rules are in:
//! they add only their own, or nothing. The network's last sandbox deletes the network's
//! rules with its own; any other deletes exactly its own elements and chain, each added
//! first (an add of what exists changes nothing, so the delete cannot fail on something a
//! SIGKILL already took), or nothing; the last sandbox of all networks deletes the table.
//! Nothing on these paths lists the ruleset.
//!
//! Published ports: DNAT in prerouting (traffic arriving on any interface, other sandboxes
//! included) and in output (the host itself, 127.0.0.1 too). Traffic the host sends from a
//! loopback address cannot leave on the bridge unless the bridge has `route_localnet`; it is
//! set on bridges stockade creates (the setting goes with the bridge), and such traffic and
//! another sandbox's hairpin traffic are masqueraded so replies come back through the host.
//! A small forwarder would avoid route_localnet but costs a process and a copy per packet.
//!
//! IPv6 has the same rules with `ip6` payloads: DNAT of published ports to the sandbox's
//! IPv6 address, hairpin and outbound masquerade, the same forward filter. IPv6 has no
//! route_localnet: the kernel drops a packet to or from ::1 that arrives on any interface
//! but `lo` (RFC 4291 2.5.3), so a reply to a DNAT from ::1 never reaches the client. The
//! IPv6 DNAT rules leave ::1 alone, and the supervisor forwards [::1] in user space
//! (forward.rs). One limit of the shared `publish` map: 0.0.0.0:P and [::]:P of two
//! sandboxes are one key, so the second is refused although the families differ.

use super::super::error::SetupError;
use crate::plan::NetworkPlan;
use crate::profile::networks::Publish;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

pub const TABLE: &str = "stockade";

/// The program nft is looked for as; CI installs it with Debian's `nftables`.
const NFT: &str = "nft";

/// The address family a match or a map is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The payload protocol of its addresses, and the family of a `dnat` to one.
    fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// Its `meta nfproto` name.
    fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// The name of one of its maps: `publish_at4`, `net-stockade0-odd6`.
    fn map(self, base: &str) -> String {
        match self {
            Family::V4 => format!("{base}4"),
            Family::V6 => format!("{base}6"),
        }
    }
}

/// An nft run under way: its transaction is sent, its answer not read yet. The caller does
/// other work meanwhile (making or removing the bridge): nft's exit waits for an RCU grace
/// period the kernel starts after every transaction (its socket's release flushes the
/// transaction's deferred destruction), several milliseconds on a loaded machine.
pub struct Pending {
    child: std::process::Child,
    step: String,
}

fn spawn(batch: &Value, step: String) -> Result<Pending, SetupError> {
    let text = batch.to_string();
    let mut child = Command::new(NFT)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            SetupError::other(
                &step,
                format!("cannot run {NFT}: {e} (install nftables: apt-get install nftables)"),
            )
        })?;
    // Written whole and closed (a transaction of a few kB fits the pipe): nft reads to EOF.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    Ok(Pending { child, step })
}

impl Pending {
    /// nft's answer: whether the kernel took the whole transaction.
    pub fn wait(self) -> Result<(), SetupError> {
        let step = self.step;
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| SetupError::other(&step, format!("{NFT}: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // "Protocol not supported": no nfnetlink socket at all (nf_tables is not loaded and
        // cannot be); the others: a table or expression the kernel cannot provide.
        let hint = if [
            "Operation not supported",
            "No such file",
            "Protocol not supported",
        ]
        .iter()
        .any(|m| err.contains(m))
        {
            " (hint: the kernel lacks nf_tables or its NAT support: modprobe nf_tables nft_nat nft_fib_inet)"
        } else if err.contains("Device or resource busy") || err.contains("File exists") {
            " (hint: another running sandbox publishes the same host address, port and protocol)"
        } else {
            ""
        };
        Err(SetupError::other(
            &step,
            format!("{NFT} -j -f - refused the rules: {err}{hint}"),
        ))
    }
}

/// What a network has in the table, shared by all its sandboxes: written to the network's
/// state directory before the run that adds it (see [`Net::line`]), so that a sweep after
/// SIGKILL, which has no plan, knows what to remove with the network's last lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    pub bridge: String,
    pub subnet: (Ipv4Addr, u8),
    pub subnet6: Option<(Ipv6Addr, u8)>,
    /// The network's default `outbound`.
    pub outbound: bool,
}

impl Net {
    pub fn of(plan: &NetworkPlan) -> Net {
        let def = &plan.def;
        Net {
            bridge: def.bridge.clone(),
            subnet: (def.subnet.addr, def.subnet.prefix),
            subnet6: def.ipv6.map(|v6| (v6.subnet.addr, v6.subnet.prefix)),
            outbound: def.outbound,
        }
    }

    /// `BRIDGE OUTBOUND SUBNET [SUBNET6]`, as the marker file holds it.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} {}/{}",
            self.bridge, self.outbound, self.subnet.0, self.subnet.1
        );
        if let Some((a, l)) = self.subnet6 {
            s.push_str(&format!(" {a}/{l}"));
        }
        s
    }

    pub fn from_line(text: &str) -> Option<Net> {
        let mut w = text.split_whitespace();
        let bridge = w.next()?.to_owned();
        let outbound = w.next()?.parse().ok()?;
        let (a, l) = w.next()?.split_once('/')?;
        let subnet = (a.parse().ok()?, l.parse().ok()?);
        let subnet6 = match w.next() {
            Some(s6) => {
                let (a, l) = s6.split_once('/')?;
                Some((a.parse().ok()?, l.parse().ok()?))
            }
            None => None,
        };
        Some(Net {
            bridge,
            subnet,
            subnet6,
            outbound,
        })
    }

    fn chain(&self, part: &str) -> String {
        format!("net-{}-{part}", self.bridge)
    }

    /// The set of its sandboxes' addresses whose `outbound` is not the network's.
    fn odd(&self, f: Family) -> String {
        f.map(&format!("net-{}-odd", self.bridge))
    }

    /// Each family it has, with its subnet as a prefix.
    fn families(&self) -> Vec<(Family, Value)> {
        let mut out = vec![(Family::V4, prefix(self.subnet.0, self.subnet.1))];
        if let Some((a, l)) = self.subnet6 {
            out.push((Family::V6, prefix(a, l)));
        }
        out
    }

    /// Its two map elements: the bridge's name leads postrouting and forward to its chains.
    fn elements(&self) -> Vec<(String, Value)> {
        ["post", "fwd"]
            .iter()
            .map(|part| {
                (
                    format!("net_{part}"),
                    json!([self.bridge, {"jump": {"target": self.chain(part)}}]),
                )
            })
            .collect()
    }

    fn sets(&self) -> Vec<Value> {
        self.families()
            .into_iter()
            .map(|(f, _)| {
                json!({"set": {"family": "inet", "table": TABLE, "name": self.odd(f),
                "type": f.addr_type()}})
            })
            .collect()
    }

    /// Its chains, their rules, its sets and its elements, for each of its families.
    fn rules(&self) -> Vec<Value> {
        let br = self.bridge.as_str();
        let [post, fwd] = ["post", "fwd"].map(|p| self.chain(p));
        let mut cmds = Vec::new();
        for c in [&post, &fwd] {
            // Flushed: a network killed long ago may have left them.
            cmds.push(json!({"add": chain_id(c)}));
            cmds.push(json!({"flush": chain_id(c)}));
        }
        for set in self.sets() {
            cmds.push(json!({"add": set}));
        }
        for (f, net) in self.families() {
            let odd = json!(format!("@{}", self.odd(f)));
            // Published traffic to the network from the host's loopback addresses (IPv4
            // only: see above) or from the network itself (hairpin) leaves with the
            // gateway's address, so the replies come back through NAT.
            let mut masq_from = vec![net.clone()];
            if f == Family::V4 {
                masq_from.insert(0, prefix(Ipv4Addr::new(127, 0, 0, 0), 8));
            }
            for from in masq_from {
                cmds.push(rule(
                    &post,
                    vec![
                        m("==", addr(f, "daddr"), net.clone()),
                        m("in", ct("status"), json!("dnat")),
                        m("==", addr(f, "saddr"), from),
                        json!({"masquerade": null}),
                    ],
                ));
            }
            // Outbound: masquerade to elsewhere, or nothing new leaves the bridge towards
            // elsewhere; the network's default for all, the set's addresses the other way.
            let (masq, keep_in) = if self.outbound {
                (
                    m("!=", addr(f, "saddr"), odd.clone()),
                    m("==", addr(f, "saddr"), odd),
                )
            } else {
                (
                    m("==", addr(f, "saddr"), odd.clone()),
                    m("!=", addr(f, "saddr"), odd),
                )
            };
            cmds.push(rule(
                &post,
                vec![
                    m("==", addr(f, "saddr"), net.clone()),
                    masq,
                    m("!=", meta("oifname"), json!(br)),
                    json!({"masquerade": null}),
                ],
            ));
            cmds.push(rule(
                &fwd,
                vec![
                    m("==", meta("iifname"), json!(br)),
                    m("!=", meta("oifname"), json!(br)),
                    m("==", addr(f, "saddr"), net.clone()),
                    keep_in,
                    m("in", ct("state"), json!("new")),
                    json!({"drop": null}),
                ],
            ));
            // Reachable from elsewhere only through published ports: other networks'
            // sandboxes and other hosts cannot open connections into the subnet.
            cmds.push(rule(
                &fwd,
                vec![
                    m("==", addr(f, "daddr"), net.clone()),
                    m("in", ct("status"), json!("dnat")),
                    json!({"accept": null}),
                ],
            ));
            cmds.push(rule(
                &fwd,
                vec![
                    m("==", meta("oifname"), json!(br)),
                    m("!=", meta("iifname"), json!(br)),
                    m("==", addr(f, "daddr"), net),
                    m("in", ct("state"), json!("new")),
                    json!({"drop": null}),
                ],
            ));
        }
        for (map, elem) in self.elements() {
            cmds.push(json!({"add": element(&map, vec![elem])}));
        }
        cmds
    }

    /// Deletes its elements, chains and sets, each added first so that what is gone
    /// already is no error; elements first (a chain a map jumps to cannot go), sets last
    /// (the chains' rules refer to them).
    fn removal(&self) -> Vec<Value> {
        let mut cmds = Vec::new();
        for (map, elem) in self.elements() {
            let el = element(&map, vec![elem]);
            cmds.push(json!({"add": el.clone()}));
            cmds.push(json!({"delete": el}));
        }
        for c in ["post", "fwd"].map(|p| self.chain(p)) {
            cmds.push(json!({"add": chain_id(&c)}));
            cmds.push(json!({"flush": chain_id(&c)}));
            cmds.push(json!({"delete": chain_id(&c)}));
        }
        for set in self.sets() {
            cmds.push(json!({"add": set.clone()}));
            cmds.push(json!({"delete": set}));
        }
        cmds
    }
}

fn element(name: &str, elem: Vec<Value>) -> Value {
    json!({"element": {"family": "inet", "table": TABLE, "name": name, "elem": elem}})
}

/// What one sandbox has in the table beyond its network's: the DNAT chain and elements of
/// its published ports, and its addresses in the network's set when its `outbound` is not
/// the network's. Enough to add it, and to delete exactly it again (a sweep after SIGKILL
/// rebuilds it from the lease file, see [`Entry::lease_words`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub veth: String,
    pub address: Ipv4Addr,
    /// Its IPv6 address, on a network with subnet6.
    pub address6: Option<Ipv6Addr>,
    pub publish: Vec<Publish>,
    /// Whether its `outbound` differs from its network's default.
    pub odd_outbound: bool,
}

/// The lease word of an entry whose `outbound` is not its network's.
const ODD_WORD: &str = "outbound-differs";

impl Entry {
    pub fn of(plan: &NetworkPlan, address: Ipv4Addr, address6: Option<Ipv6Addr>) -> Entry {
        Entry {
            veth: plan.veth.clone(),
            address,
            address6,
            publish: plan.publish.iter().map(|p| p.value).collect(),
            odd_outbound: plan.outbound.value != plan.def.outbound,
        }
    }

    /// The part of a lease file after the supervisor's pid and start time: the veth, the
    /// IPv6 address (when it has one), `outbound-differs` when it does, and the published
    /// ports, as `[HOST_IP:]HOST_PORT:PORT/PROTO` words (none of which reads as an IPv6
    /// address).
    pub fn lease_words(&self) -> String {
        let mut s = self.veth.clone();
        if let Some(a6) = self.address6 {
            s.push(' ');
            s.push_str(&a6.to_string());
        }
        if self.odd_outbound {
            s.push(' ');
            s.push_str(ODD_WORD);
        }
        for p in &self.publish {
            s.push(' ');
            s.push_str(&p.to_string());
        }
        s
    }

    /// The entry a lease file names (its words after pid and start time); None when the
    /// lease has no veth (written by a start killed mid-write).
    pub fn from_lease<'a>(
        address: Ipv4Addr,
        mut words: impl Iterator<Item = &'a str>,
    ) -> Option<Entry> {
        let veth = words.next()?.to_owned();
        let mut address6 = None;
        let mut publish = Vec::new();
        let mut odd_outbound = false;
        for w in words {
            if w == ODD_WORD {
                odd_outbound = true;
                continue;
            }
            match w.parse::<Ipv6Addr>() {
                Ok(a6) => address6 = Some(a6),
                Err(_) => publish.extend(crate::profile::networks::parse_publish(w).ok()),
            }
        }
        Some(Entry {
            veth,
            address,
            address6,
            publish,
            odd_outbound,
        })
    }

    fn dnat_chain(&self) -> String {
        format!("{}-dnat", self.veth)
    }

    /// Its map elements: each published key jumps to its DNAT chain. A port published
    /// twice (on two container ports) is one key.
    fn elements(&self) -> Vec<(String, Vec<Value>)> {
        let jump = json!({"jump": {"target": self.dnat_chain()}});
        let mut any = Vec::new();
        let mut at4 = Vec::new();
        let mut at6 = Vec::new();
        for p in &self.publish {
            let proto = p.proto.to_string();
            // Every address (of both families, or of one: 0.0.0.0, [::]) is a port key;
            // the DNAT chain's rules tell the families apart.
            let (list, key) = match p.host_ip {
                None => (&mut any, json!({"concat": [proto, p.host_port]})),
                Some(h) if h.is_unspecified() => {
                    (&mut any, json!({"concat": [proto, p.host_port]}))
                }
                // ::1: no element, forward.rs listens there.
                Some(IpAddr::V6(h)) if h.is_loopback() => continue,
                Some(h) => (
                    if h.is_ipv4() { &mut at4 } else { &mut at6 },
                    json!({"concat": [h.to_string(), proto, p.host_port]}),
                ),
            };
            let elem = json!([key, jump]);
            if !list.contains(&elem) {
                list.push(elem);
            }
        }
        let mut out = Vec::new();
        if !any.is_empty() {
            out.push(("publish".to_owned(), any));
        }
        for (f, at) in [(Family::V4, at4), (Family::V6, at6)] {
            if !at.is_empty() {
                out.push((f.map("publish_at"), at));
            }
        }
        out
    }

    /// Its addresses in the network's set of `outbound` exceptions, set by set.
    fn odd_elements(&self, net: &Net) -> Vec<(String, Vec<Value>)> {
        if !self.odd_outbound {
            return Vec::new();
        }
        let mut out = vec![(net.odd(Family::V4), vec![json!(self.address.to_string())])];
        if let (Some(a6), Some(_)) = (self.address6, net.subnet6) {
            out.push((net.odd(Family::V6), vec![json!(a6.to_string())]));
        }
        out
    }

    /// Whether it has anything of its own in the table: without, its start and stop need
    /// no nft run while its network has rules.
    pub fn has_own(&self) -> bool {
        self.odd_outbound || !self.elements().is_empty()
    }
}

fn table() -> Value {
    json!({"table": {"family": "inet", "name": TABLE}})
}

fn chain_id(name: &str) -> Value {
    json!({"chain": {"family": "inet", "table": TABLE, "name": name}})
}

fn m(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn addr(family: Family, field: &str) -> Value {
    json!({"payload": {"protocol": family.proto(), "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn ct(key: &str) -> Value {
    json!({"ct": {"key": key}})
}

fn prefix(net: impl ToString, len: u8) -> Value {
    json!({"prefix": {"addr": net.to_string(), "len": len}})
}

fn th_dport() -> Value {
    json!({"payload": {"protocol": "th", "field": "dport"}})
}

fn vmap(key: Value, map: &str) -> Value {
    json!({"vmap": {"key": key, "data": format!("@{map}")}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}})
}

/// The maps, each added as it is (adding an existing map changes nothing).
fn maps() -> Vec<Value> {
    let map = |name: String, key: Value| {
        json!({"add": {"map": {"family": "inet", "table": TABLE, "name": name,
        "type": key, "map": "verdict"}}})
    };
    let mut cmds = vec![
        json!({"add": table()}),
        map("publish".into(), json!(["inet_proto", "inet_service"])),
        map("net_post".into(), json!("ifname")),
        map("net_fwd".into(), json!("ifname")),
    ];
    for f in Family::ALL {
        cmds.push(map(
            f.map("publish_at"),
            json!([f.addr_type(), "inet_proto", "inet_service"]),
        ));
    }
    cmds
}

/// The table, its maps and its base chains with their dispatch rules, written so that
/// running it on a table that has them already leaves the table as it was.
fn skeleton() -> Vec<Value> {
    let mut cmds = maps();
    let dnat_lookup = |chain: &str| {
        let mut r: Vec<Value> = Family::ALL
            .iter()
            .map(|f| {
                rule(
                    chain,
                    vec![vmap(
                        json!({"concat": [addr(*f, "daddr"), meta("l4proto"), th_dport()]}),
                        &f.map("publish_at"),
                    )],
                )
            })
            .collect();
        r.push(rule(
            chain,
            vec![vmap(
                json!({"concat": [meta("l4proto"), th_dport()]}),
                "publish",
            )],
        ));
        r
    };
    // Traffic into a bridge (published, hairpin, from elsewhere) and out of it (outbound).
    let by_bridge = |chain: &str, map: &str| {
        ["oifname", "iifname"].map(|key| rule(chain, vec![vmap(meta(key), map)]))
    };
    for (name, kind, hook, prio, rules) in [
        (
            "prerouting",
            "nat",
            "prerouting",
            -100,
            dnat_lookup("prerouting"),
        ),
        ("output", "nat", "output", -100, dnat_lookup("output")),
        (
            "postrouting",
            "nat",
            "postrouting",
            100,
            by_bridge("postrouting", "net_post").to_vec(),
        ),
        (
            "forward",
            "filter",
            "forward",
            0,
            by_bridge("forward", "net_fwd").to_vec(),
        ),
    ] {
        cmds.push(
            json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}}),
        );
        cmds.push(json!({"flush": chain_id(name)}));
        cmds.extend(rules);
    }
    cmds
}

/// The sandbox's own chain, rules and elements: DNAT of its published ports, for IPv4 and
/// for IPv6 when it has an address, and its addresses in its network's exception set.
fn sandbox_rules(net: &Net, e: &Entry) -> Vec<Value> {
    let mut cmds = Vec::new();
    let elements = e.elements();
    if !elements.is_empty() {
        let dnat = e.dnat_chain();
        // Flushed in case a sandbox killed long ago had the same veth name.
        cmds.push(json!({"add": chain_id(&dnat)}));
        cmds.push(json!({"flush": chain_id(&dnat)}));
        let mut families = vec![(Family::V4, IpAddr::V4(e.address))];
        if let (Some(a6), Some(_)) = (e.address6, net.subnet6) {
            families.push((Family::V6, IpAddr::V6(a6)));
        }
        for (f, addr_f) in &families {
            for p in &e.publish {
                // A publish of one family (a host address, 0.0.0.0 or [::]) leaves the
                // other; one on ::1 is forward.rs's alone.
                if p.host_ip
                    .is_some_and(|h| Family::of(h) != *f || h.is_loopback() && h.is_ipv6())
                {
                    continue;
                }
                let proto = p.proto.to_string();
                let mut expr = vec![
                    m("==", meta("nfproto"), json!(f.nfproto())),
                    m(
                        "==",
                        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                        json!("local"),
                    ),
                ];
                match p.host_ip.filter(|h| !h.is_unspecified()) {
                    Some(h) => expr.push(m("==", addr(*f, "daddr"), json!(h.to_string()))),
                    // Every address but ::1, whose replies could not come back (see above).
                    None if *f == Family::V6 => expr.push(m("!=", addr(*f, "daddr"), json!("::1"))),
                    None => {}
                }
                expr.push(m(
                    "==",
                    json!({"payload": {"protocol": proto, "field": "dport"}}),
                    json!(p.host_port),
                ));
                expr.push(
                    json!({"dnat": {"family": f.proto(), "addr": addr_f.to_string(),
                "port": p.port}}),
                );
                cmds.push(rule(&dnat, expr));
            }
        }
    }
    for (map, elem) in elements.into_iter().chain(e.odd_elements(net)) {
        cmds.push(json!({"add": element(&map, elem)}));
    }
    cmds
}

/// The start's transaction, or None when there is nothing to add: the shared skeleton,
/// the network's chains when `with_net` (its first sandbox), then the sandbox's own.
fn add_batch(plan: &NetworkPlan, e: &Entry, with_net: bool) -> Option<Value> {
    if !with_net && !e.has_own() {
        return None;
    }
    let net = Net::of(plan);
    let mut cmds = skeleton();
    if with_net {
        cmds.extend(net.rules());
    } else {
        // The sets its elements go to: the network's, there already.
        cmds.extend(net.sets().into_iter().map(|s| json!({"add": s})));
    }
    cmds.extend(sandbox_rules(&net, e));
    Some(json!({"nftables": cmds}))
}

/// The stop's transaction, or None when there is nothing to remove: the table when `last`,
/// else each entry's own elements and chain (each added before it is deleted so that what
/// is already gone is no error) and, when `net_goes`, the network's rules. `net` is what the
/// network's marker names (None: the network has no rules, nor its sets).
fn remove_batch(entries: &[Entry], net: Option<&Net>, net_goes: bool, last: bool) -> Option<Value> {
    let own: Vec<&Entry> = entries.iter().filter(|e| e.has_own()).collect();
    let net_goes = net.filter(|_| net_goes);
    if own.is_empty() && net_goes.is_none() {
        return None;
    }
    if last {
        return Some(json!({"nftables": [{"add": table()}, {"delete": table()}]}));
    }
    let mut cmds = maps();
    if let Some(n) = net {
        cmds.extend(n.sets().into_iter().map(|s| json!({"add": s})));
    }
    for e in own {
        let elements = e.elements();
        let odd = net.map(|n| e.odd_elements(n)).unwrap_or_default();
        for (map, elem) in elements.iter().cloned().chain(odd) {
            let el = element(&map, elem);
            cmds.push(json!({"add": el.clone()}));
            cmds.push(json!({"delete": el}));
        }
        // Elements first: a chain a map still jumps to cannot be deleted.
        if !elements.is_empty() {
            let c = e.dnat_chain();
            cmds.push(json!({"add": chain_id(&c)}));
            cmds.push(json!({"flush": chain_id(&c)}));
            cmds.push(json!({"delete": chain_id(&c)}));
        }
    }
    if let Some(n) = net_goes {
        cmds.extend(n.removal());
    }
    Some(json!({"nftables": cmds}))
}

/// Starts adding the sandbox's chains, rules and elements (and, when `with_net`, its
/// network's, and whatever of the table is missing) in one transaction; None when it has
/// nothing to add.
pub fn add(plan: &NetworkPlan, e: &Entry, with_net: bool) -> Result<Option<Pending>, SetupError> {
    add_batch(plan, e, with_net)
        .map(|b| spawn(&b, format!("add the nftables rules of {}", e.veth)))
        .transpose()
}

/// Starts deleting these sandboxes' elements and chains (and, when `net_goes`, the
/// network's rules), or the whole table when no other sandbox is left (`last`), in one
/// transaction; None when there is nothing to delete.
pub fn remove(
    entries: &[Entry],
    net: Option<&Net>,
    net_goes: bool,
    last: bool,
) -> Result<Option<Pending>, SetupError> {
    let mut names: Vec<&str> = entries.iter().map(|e| e.veth.as_str()).collect();
    if let Some(n) = net.filter(|_| net_goes) {
        names.push(&n.bridge);
    }
    remove_batch(entries, net, net_goes, last)
        .map(|b| {
            spawn(
                &b,
                format!("remove the nftables rules of {}", names.join(", ")),
            )
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(outbound: bool, publish: &[&str]) -> NetworkPlan {
        crate::plan::network::test_plan(outbound, publish)
    }

    fn entry(p: &NetworkPlan, veth: &str, a: &str) -> Entry {
        let mut e = Entry::of(p, a.parse().unwrap(), None);
        e.veth = veth.into();
        e
    }

    /// The plan on a network with IPv6 (fd89::/64), and its entry at fd89::5.
    fn plan6(outbound: bool, publish: &[&str]) -> (NetworkPlan, Entry) {
        let mut p = plan(outbound, publish);
        p.def.ipv6 = Some(crate::profile::networks::Ipv6Net {
            subnet: crate::profile::networks::Subnet6::parse("fd89::/64").unwrap(),
            gateway: "fd89::1".parse().unwrap(),
        });
        let e = Entry::of(
            &p,
            "10.89.0.5".parse().unwrap(),
            Some("fd89::5".parse().unwrap()),
        );
        (p, e)
    }

    #[test]
    fn an_ipv6_sandbox_has_its_rules_in_both_families() {
        let (p, e) = plan6(
            true,
            &[
                "8080:80",
                "[fd00::1]:5353:53/udp",
                "0.0.0.0:8081:81",
                "127.0.0.1:8082:82",
                "[::1]:8083:83",
            ],
        );
        let line = format!("123 456 {}", e.lease_words());
        let mut w = line.split_whitespace().skip(2);
        assert_eq!(Entry::from_lease(e.address, &mut w), Some(e.clone()));
        let batch = add_batch(&p, &e, true).unwrap();
        let added = objects(&batch, "add");
        for want in [
            "element \"net_post\" \"stockade0\"",
            "element \"net_fwd\" \"stockade0\"",
            "element \"publish\" {\"concat\":[\"tcp\",8080]}",
            "element \"publish\" {\"concat\":[\"tcp\",8081]}",
            "element \"publish_at6\" {\"concat\":[\"fd00::1\",\"udp\",5353]}",
            "element \"publish_at4\" {\"concat\":[\"127.0.0.1\",\"tcp\",8082]}",
        ] {
            assert!(added.contains(&want.to_owned()), "{want} not in {added:?}");
        }
        // The DNAT rules: 8080 to both addresses, 5353 to the IPv6 one only, 8081 and
        // 8082 to the IPv4 one only.
        let dnats: Vec<String> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"]["rule"]["expr"].as_array())
            .flat_map(|x| x.iter().filter_map(|e| e.get("dnat")).cloned())
            .map(|d| format!("{} {}:{}", d["family"], d["addr"], d["port"]))
            .collect();
        assert_eq!(
            dnats,
            [
                "\"ip\" \"10.89.0.5\":80",
                "\"ip\" \"10.89.0.5\":81",
                "\"ip\" \"10.89.0.5\":82",
                "\"ip6\" \"fd89::5\":80",
                "\"ip6\" \"fd89::5\":53",
            ]
        );
        // ::1 is the forwarder's (forward.rs): no element of it, and the IPv6 DNAT of a port
        // without host address leaves it out.
        assert!(!added.iter().any(|o| o.contains("8083")), "{added:?}");
        assert!(batch.to_string().contains(r#"{"match":{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"!=","right":"::1"}}"#));
        // The network's IPv6 subnet is masqueraded outbound (but for the exception set);
        // its forward filter keeps new connections out.
        let text = batch.to_string();
        let net6 = r#"{"prefix":{"addr":"fd89::","len":64}}"#;
        assert!(text.contains(&format!(r#"{{"match":{{"left":{{"payload":{{"field":"saddr","protocol":"ip6"}}}},"op":"==","right":{net6}}}}},{{"match":{{"left":{{"payload":{{"field":"saddr","protocol":"ip6"}}}},"op":"!=","right":"@net-stockade0-odd6"}}}},{{"match":{{"left":{{"meta":{{"key":"oifname"}}}},"op":"!=","right":"stockade0"}}}},{{"masquerade":null}}"#)), "{text}");
        assert!(text.contains(&format!(r#"{{"match":{{"left":{{"payload":{{"field":"daddr","protocol":"ip6"}}}},"op":"==","right":{net6}}}}},{{"match":{{"left":{{"ct":{{"key":"state"}}}},"op":"in","right":"new"}}}},{{"drop":null}}"#)), "{text}");
        let net = Net::of(&p);
        let removed = remove_batch(std::slice::from_ref(&e), Some(&net), true, false).unwrap();
        assert_eq!(objects(&removed, "delete"), added);
    }

    #[test]
    fn a_lease_names_what_a_sweep_removes() {
        let p = plan(true, &["127.0.0.1:16479:6379", "6380:6379", "5353:53/udp"]);
        let e = entry(&p, "vstk7", "10.89.0.5");
        let line = format!("123 456 {}", e.lease_words());
        let mut w = line.split_whitespace().skip(2);
        assert_eq!(Entry::from_lease(e.address, &mut w), Some(e));
        assert_eq!(
            Entry::from_lease("10.89.0.5".parse().unwrap(), "".split(' ').skip(1)),
            None
        );
    }

    /// (command, kind, name) of every element and sandbox chain a batch adds or deletes.
    fn objects(batch: &Value, op: &str) -> Vec<String> {
        let mut out: Vec<String> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.get(op))
            .flat_map(|o| {
                let mut v = Vec::new();
                if let Some(s) = o.get("set") {
                    v.push(format!("set {}", s["name"]));
                }
                if let Some(el) = o.get("element") {
                    for e in el["elem"].as_array().unwrap() {
                        // A map's element is [key, verdict]; a set's its key.
                        let key = e.get(0).unwrap_or(e);
                        v.push(format!("element {} {key}", el["name"]));
                    }
                }
                if let Some(c) = o.get("chain") {
                    if c.get("hook").is_none() {
                        v.push(format!("chain {}", c["name"]));
                    }
                }
                v
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn a_stop_deletes_exactly_what_its_start_added_and_the_last_the_table() {
        for (outbound, publish) in [
            (
                true,
                &[
                    "127.0.0.1:16479:6379",
                    "6380:6379",
                    "6380:80",
                    "5353:53/udp",
                ][..],
            ),
            (false, &[][..]),
        ] {
            let p = plan(outbound, publish);
            let net = Net::of(&p);
            let e = entry(&p, "vstk7", "10.89.0.5");
            // A sandbox joining a network that has its rules: only its own objects.
            let added = objects(&add_batch(&p, &e, false).unwrap(), "add");
            let published = "element \"publish\" {\"concat\":[\"tcp\",6380]}".to_owned();
            assert_eq!(added.contains(&published), outbound, "{added:?}");
            // outbound = false on a network whose default is true: in the exception set.
            let odd = "element \"net-stockade0-odd4\" \"10.89.0.5\"".to_owned();
            assert_eq!(added.contains(&odd), !outbound, "{added:?}");
            assert!(!added.iter().any(|o| o.contains("net_")), "{added:?}");
            assert_eq!(
                added.iter().filter(|o| o.starts_with("chain")).count(),
                usize::from(outbound),
                "{added:?}"
            );
            let removed = remove_batch(std::slice::from_ref(&e), Some(&net), false, false).unwrap();
            let deleted = objects(&removed, "delete");
            assert_eq!(
                deleted,
                added
                    .iter()
                    .filter(|o| !o.starts_with("set"))
                    .cloned()
                    .collect::<Vec<_>>()
            );
            // Nothing of the table itself, nor of the network, goes while others remain.
            assert!(
                !removed.to_string().contains("\"delete\":{\"table\""),
                "{removed}"
            );
            // The network's first sandbox adds the network's chains, sets and elements;
            // its last deletes exactly them with its own.
            let first = objects(&add_batch(&p, &e, true).unwrap(), "add");
            for want in [
                "chain \"net-stockade0-post\"",
                "chain \"net-stockade0-fwd\"",
                "set \"net-stockade0-odd4\"",
                "element \"net_post\" \"stockade0\"",
            ] {
                assert!(first.contains(&want.to_owned()), "{want} not in {first:?}");
            }
            let gone = remove_batch(std::slice::from_ref(&e), Some(&net), true, false).unwrap();
            assert_eq!(objects(&gone, "delete"), first);
        }
        let p = plan(true, &[]);
        let net = Net::of(&p);
        let last = remove_batch(&[entry(&p, "vstk7", "10.89.0.5")], Some(&net), true, true);
        assert_eq!(
            last,
            Some(json!({"nftables": [{"add": table()}, {"delete": table()}]}))
        );
    }

    #[test]
    fn a_sandbox_joining_with_nothing_of_its_own_needs_no_nft_run() {
        // No publish, and the network's default outbound (true for `default`).
        let p = plan(true, &[]);
        let net = Net::of(&p);
        let e = entry(&p, "vstk7", "10.89.0.5");
        assert!(!e.has_own());
        assert_eq!(add_batch(&p, &e, false), None);
        assert_eq!(
            remove_batch(std::slice::from_ref(&e), Some(&net), false, false),
            None
        );
        // Its network's first and last still run: the network's rules come and go.
        assert!(add_batch(&p, &e, true).is_some());
        assert!(remove_batch(std::slice::from_ref(&e), Some(&net), true, false).is_some());
        // A sweep of it after SIGKILL: the lease gives back the same entry.
        let line = format!("1 2 {}", e.lease_words());
        let back = Entry::from_lease(e.address, line.split_whitespace().skip(2)).unwrap();
        assert_eq!(back, e);
        assert_eq!(Net::from_line(&net.line()), Some(net));
        // outbound = false on it, or a published port: a run.
        let odd = plan(false, &[]);
        assert!(add_batch(&odd, &entry(&odd, "vstk8", "10.89.0.6"), false).is_some());
        let publ = plan(true, &["8080:80"]);
        assert!(add_batch(&publ, &entry(&publ, "vstk9", "10.89.0.7"), false).is_some());
    }
}
