//! The sandbox's rules, in stockade's own nftables table `inet stockade` (no other table is
//! touched: Docker's, firewalld's and an admin's rules stay as they are). One `inet` table so
//! IPv4 and IPv6 rules live side by side; IPv4 matches are written with `ip` payloads, and
//! every helper that writes an address match takes a [`Family`].
//!
//! Shape: four shared base chains (`prerouting`, `output`, `postrouting`, `forward`) whose
//! only rules look the packet up in verdict maps, and three regular chains per sandbox,
//! named after its veth (`vstk123-dnat`, `-post`, `-fwd`), that the maps jump to:
//!
//! - `publish` (protocol . host port: every host address, of both families when the sandbox
//!   has IPv6, or of one for 0.0.0.0 and [::]) and `publish_at4`/`publish_at6` (host address
//!   . protocol . port) lead the nat prerouting and output hooks to the sandbox's DNAT chain,
//!   whose rules DNAT each family to the sandbox's address of that family;
//! - `post4`/`post6` and `fwd4`/`fwd6` (an address, looked up as source and as destination)
//!   lead postrouting and forward to its masquerade and filter chains.
//!
//! Why verdict maps and not per-sandbox base chains: a base chain is a hook registration, and
//! every packet walks every base chain on its hook, so N sandboxes cost N evaluations per
//! packet and a start or stop registers and unregisters four hooks. With maps a packet costs
//! one hash lookup per map whatever the number of sandboxes, and a start or stop adds or
//! deletes elements and regular chains only. Why maps rather than one `jump` rule per sandbox
//! in the base chains: deleting a rule needs its handle, which only listing the table tells;
//! an element is deleted by its key, which the plan names.
//!
//! A start is one `nft -j -f -` transaction: the table, the maps and the base chains added
//! idempotently (the base chains are flushed and their few fixed rules written again, so a
//! start never duplicates them and repairs them if someone changed them), then the sandbox's
//! chains, rules and elements. A stop is one transaction that deletes exactly the sandbox's
//! elements and chains, each added first (an add of what exists changes nothing, so the
//! delete cannot fail on something a SIGKILL already took), or, for the last sandbox of all
//! networks, the table. Nothing on these paths lists the ruleset.
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

    /// The name of one of its maps: `post4`, `fwd6`, `publish_at4`.
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

/// What one sandbox has in the table: enough to add it, and to delete exactly it again (a
/// sweep after SIGKILL rebuilds it from the lease file, see [`Entry::lease_line`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub veth: String,
    pub address: Ipv4Addr,
    /// Its IPv6 address, on a network with subnet6.
    pub address6: Option<Ipv6Addr>,
    pub publish: Vec<Publish>,
}

impl Entry {
    pub fn of(plan: &NetworkPlan, address: Ipv4Addr, address6: Option<Ipv6Addr>) -> Entry {
        Entry {
            veth: plan.veth.clone(),
            address,
            address6,
            publish: plan.publish.iter().map(|p| p.value).collect(),
        }
    }

    /// The part of a lease file after the supervisor's pid and start time: the veth, the
    /// IPv6 address (when it has one) and the published ports, as
    /// `[HOST_IP:]HOST_PORT:PORT/PROTO` words (none of which reads as an IPv6 address).
    pub fn lease_words(&self) -> String {
        let mut s = self.veth.clone();
        if let Some(a6) = self.address6 {
            s.push(' ');
            s.push_str(&a6.to_string());
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
        for w in words {
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
        })
    }

    fn chain(&self, part: &str) -> String {
        format!("{}-{part}", self.veth)
    }

    /// Its elements, map by map: each key jumps to one of its chains. A port published twice
    /// (on two container ports) is one key.
    fn elements(&self) -> Vec<(String, Vec<Value>)> {
        let jump = |part: &str| json!({"jump": {"target": self.chain(part)}});
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
            let elem = json!([key, jump("dnat")]);
            if !list.contains(&elem) {
                list.push(elem);
            }
        }
        let mut out = Vec::new();
        let addresses = std::iter::once((Family::V4, IpAddr::V4(self.address)))
            .chain(self.address6.map(|a| (Family::V6, IpAddr::V6(a))));
        for (f, a) in addresses {
            let a = a.to_string();
            out.push((f.map("post"), vec![json!([a, jump("post")])]));
            out.push((f.map("fwd"), vec![json!([a, jump("fwd")])]));
        }
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
}

const PARTS: [&str; 3] = ["dnat", "post", "fwd"];

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
    ];
    for f in Family::ALL {
        cmds.push(map(
            f.map("publish_at"),
            json!([f.addr_type(), "inet_proto", "inet_service"]),
        ));
        cmds.push(map(f.map("post"), json!(f.addr_type())));
        cmds.push(map(f.map("fwd"), json!(f.addr_type())));
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
    let by_address = |chain: &str, map: &str| {
        Family::ALL
            .iter()
            .flat_map(|f| {
                ["daddr", "saddr"]
                    .map(|field| rule(chain, vec![vmap(addr(*f, field), &f.map(map))]))
            })
            .collect::<Vec<_>>()
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
            by_address("postrouting", "post"),
        ),
        (
            "forward",
            "filter",
            "forward",
            0,
            by_address("forward", "fwd"),
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

/// The sandbox's own chains and their rules: for IPv4, and for IPv6 when it has an address.
fn sandbox_rules(plan: &NetworkPlan, e: &Entry) -> Vec<Value> {
    let def = &plan.def;
    let br = def.bridge.as_str();
    let [dnat, post, fwd] = PARTS.map(|p| e.chain(p));
    let mut cmds = Vec::new();
    for c in [&dnat, &post, &fwd] {
        // Flushed in case a sandbox killed long ago had the same veth name.
        cmds.push(json!({"add": chain_id(c)}));
        cmds.push(json!({"flush": chain_id(c)}));
    }
    // Each family with the sandbox's address in it, the sources whose published traffic
    // is masqueraded (the host's loopback addresses, IPv4 only: see above; the network
    // itself, hairpin), and the network's prefix.
    let mut families = vec![(
        Family::V4,
        IpAddr::V4(e.address),
        vec![
            prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
            prefix(def.subnet.addr, def.subnet.prefix),
        ],
    )];
    if let (Some(a6), Some(v6)) = (e.address6, def.ipv6) {
        families.push((
            Family::V6,
            IpAddr::V6(a6),
            vec![prefix(v6.subnet.addr, v6.subnet.prefix)],
        ));
    }
    for (f, addr_f, _) in &families {
        for p in &e.publish {
            // A publish of one family (a host address, 0.0.0.0 or [::]) leaves the other;
            // one on ::1 is forward.rs's alone.
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
                json!({"dnat": {"family": f.proto(), "addr": addr_f.to_string(), "port": p.port}}),
            );
            cmds.push(rule(&dnat, expr));
        }
    }
    for (f, addr_f, masq_from) in &families {
        let a = addr_f.to_string();
        // Published traffic from the host's loopback addresses or from the network itself
        // (hairpin) leaves with the gateway's address, so the replies come back through NAT.
        for from in masq_from {
            cmds.push(rule(
                &post,
                vec![
                    m("==", addr(*f, "daddr"), json!(a)),
                    m("in", ct("status"), json!("dnat")),
                    m("==", addr(*f, "saddr"), from.clone()),
                    json!({"masquerade": null}),
                ],
            ));
        }
        if plan.outbound.value {
            cmds.push(rule(
                &post,
                vec![
                    m("==", addr(*f, "saddr"), json!(a)),
                    m("!=", meta("oifname"), json!(br)),
                    json!({"masquerade": null}),
                ],
            ));
        } else {
            // Only the own network: nothing new leaves the bridge towards elsewhere.
            cmds.push(rule(
                &fwd,
                vec![
                    m("==", meta("iifname"), json!(br)),
                    m("!=", meta("oifname"), json!(br)),
                    m("==", addr(*f, "saddr"), json!(a)),
                    m("in", ct("state"), json!("new")),
                    json!({"drop": null}),
                ],
            ));
        }
        // Reachable from elsewhere only through its published ports: other networks'
        // sandboxes and other hosts cannot open connections to its address.
        cmds.push(rule(
            &fwd,
            vec![
                m("==", addr(*f, "daddr"), json!(a)),
                m("in", ct("status"), json!("dnat")),
                json!({"accept": null}),
            ],
        ));
        cmds.push(rule(
            &fwd,
            vec![
                m("==", meta("oifname"), json!(br)),
                m("!=", meta("iifname"), json!(br)),
                m("==", addr(*f, "daddr"), json!(a)),
                m("in", ct("state"), json!("new")),
                json!({"drop": null}),
            ],
        ));
    }
    for (map, elem) in e.elements() {
        cmds.push(
            json!({"add": {"element": {"family": "inet", "table": TABLE, "name": map,
            "elem": elem}}}),
        );
    }
    cmds
}

/// The start's transaction: the shared skeleton, then the sandbox's chains and elements.
fn add_batch(plan: &NetworkPlan, e: &Entry) -> Value {
    let mut cmds = skeleton();
    cmds.extend(sandbox_rules(plan, e));
    json!({"nftables": cmds})
}

/// The stop's transaction: the table when `last`, else each entry's elements and chains,
/// each added before it is deleted so that what is already gone is no error.
fn remove_batch(entries: &[Entry], last: bool) -> Value {
    if last {
        return json!({"nftables": [{"add": table()}, {"delete": table()}]});
    }
    let mut cmds = maps();
    for e in entries {
        for c in PARTS.map(|p| e.chain(p)) {
            cmds.push(json!({"add": chain_id(&c)}));
        }
        for (map, elem) in e.elements() {
            let el =
                json!({"element": {"family": "inet", "table": TABLE, "name": map, "elem": elem}});
            cmds.push(json!({"add": el.clone()}));
            cmds.push(json!({"delete": el}));
        }
        // Elements first: a chain a map still jumps to cannot be deleted.
        for c in PARTS.map(|p| e.chain(p)) {
            cmds.push(json!({"flush": chain_id(&c)}));
            cmds.push(json!({"delete": chain_id(&c)}));
        }
    }
    json!({"nftables": cmds})
}

/// Starts adding the sandbox's chains, rules and elements (and whatever of the table is
/// missing) in one transaction.
pub fn add(plan: &NetworkPlan, e: &Entry) -> Result<Pending, SetupError> {
    spawn(
        &add_batch(plan, e),
        format!("add the nftables rules of {}", e.veth),
    )
}

/// Starts deleting these sandboxes' elements and chains, or the whole table when no other
/// sandbox is left (`last`), in one transaction.
pub fn remove(entries: &[Entry], last: bool) -> Result<Pending, SetupError> {
    let names: Vec<&str> = entries.iter().map(|e| e.veth.as_str()).collect();
    spawn(
        &remove_batch(entries, last),
        format!("remove the nftables rules of {}", names.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Decided, Provenance};

    fn plan(outbound: bool, publish: &[&str]) -> NetworkPlan {
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
            dns: Decided::new(Vec::new(), test.clone()),
            veth: "vstk7".into(),
            state_dir: crate::plan::network::network_dir("default"),
            hostname: "test".into(),
            hosts_file: "/run/stockade/networks/default/vstk7.hosts".into(),
            resolv_file: "/run/stockade/networks/default/vstk7.resolv.conf".into(),
        }
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
        let batch = add_batch(&p, &e);
        let added = objects(&batch, "add");
        for want in [
            "element \"post6\" \"fd89::5\"",
            "element \"fwd6\" \"fd89::5\"",
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
        // Outbound IPv6 is masqueraded; the IPv6 forward filter keeps new connections out.
        let text = batch.to_string();
        assert!(text.contains(r#"{"match":{"left":{"payload":{"field":"saddr","protocol":"ip6"}},"op":"==","right":"fd89::5"}},{"match":{"left":{"meta":{"key":"oifname"}},"op":"!=","right":"stockade0"}},{"masquerade":null}"#), "{text}");
        assert!(text.contains(r#"{"match":{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"==","right":"fd89::5"}},{"match":{"left":{"ct":{"key":"state"}},"op":"in","right":"new"}},{"drop":null}"#), "{text}");
        let removed = remove_batch(std::slice::from_ref(&e), false);
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
                if let Some(el) = o.get("element") {
                    for e in el["elem"].as_array().unwrap() {
                        v.push(format!("element {} {}", el["name"], e[0]));
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
            let e = entry(&p, "vstk7", "10.89.0.5");
            let added = objects(&add_batch(&p, &e), "add");
            let published = "element \"publish\" {\"concat\":[\"tcp\",6380]}".to_owned();
            assert_eq!(added.contains(&published), outbound, "{added:?}");
            assert!(
                added.contains(&"element \"post4\" \"10.89.0.5\"".to_owned()),
                "{added:?}"
            );
            assert_eq!(
                added.iter().filter(|o| o.starts_with("chain")).count(),
                3,
                "{added:?}"
            );
            let removed = remove_batch(std::slice::from_ref(&e), false);
            assert_eq!(objects(&removed, "delete"), added);
            // Nothing of the table itself goes while other sandboxes remain.
            assert!(
                !removed.to_string().contains("\"delete\":{\"table\""),
                "{removed}"
            );
        }
        let p = plan(true, &[]);
        let last = remove_batch(&[entry(&p, "vstk7", "10.89.0.5")], true);
        assert_eq!(
            last,
            json!({"nftables": [{"add": table()}, {"delete": table()}]})
        );
    }
}
