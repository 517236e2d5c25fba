//! The sandbox's nftables rules, in stockade's own table `ip stockade` (no other table is
//! touched: Docker's, firewalld's and an admin's rules stay as they are). Each sandbox gets
//! base chains of its own, named after its veth (`vstk123-pre`, `-out`, `-post`, `-fwd`),
//! so removing one sandbox's rules is deleting its chains: exact, with no rule handles to
//! track. The table goes with the last chain.
//!
//! Rules go through nft's JSON interface (`nft -j -f -`, one atomic transaction per change),
//! built as data with serde_json rather than as command text.
//!
//! Published ports: DNAT in prerouting (traffic arriving on any interface, other sandboxes
//! included) and in output (the host itself, 127.0.0.1 too). Traffic the host sends from a
//! loopback address cannot leave on the bridge unless the bridge has `route_localnet`; it is
//! set on bridges stockade creates (the setting goes with the bridge), and such traffic and
//! another sandbox's hairpin traffic are masqueraded so replies come back through the host.
//! A small forwarder would avoid route_localnet but costs a process and a copy per packet.

use super::super::error::SetupError;
use crate::plan::NetworkPlan;
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const TABLE: &str = "stockade";

/// The program nft is looked for as; CI installs it with Debian's `nftables`.
const NFT: &str = "nft";

fn run(batch: &Value, step: &str) -> Result<String, SetupError> {
    let text = batch.to_string();
    let mut child = Command::new(NFT)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            SetupError::other(
                step,
                format!("cannot run {NFT}: {e} (install nftables: apt-get install nftables)"),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| SetupError::other(step, format!("{NFT}: {e}")))?;
    if !out.status.success() {
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
            " (hint: the kernel lacks nf_tables or its NAT support: modprobe nf_tables nft_nat nft_fib_ipv4)"
        } else {
            ""
        };
        return Err(SetupError::other(
            step,
            format!("{NFT} -j -f - refused the rules: {err}{hint}"),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn chain_names(veth: &str) -> [String; 4] {
    ["pre", "out", "post", "fwd"].map(|c| format!("{veth}-{c}"))
}

fn m(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn ip(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn ct(key: &str) -> Value {
    json!({"ct": {"key": key}})
}

fn prefix(net: Ipv4Addr, len: u8) -> Value {
    json!({"prefix": {"addr": net.to_string(), "len": len}})
}

/// Adds the sandbox's chains and rules in one transaction.
pub fn add(plan: &NetworkPlan, address: Ipv4Addr) -> Result<(), SetupError> {
    let def = &plan.def;
    let br = def.bridge.as_str();
    let a = address.to_string();
    let [pre, out, post, fwd] = chain_names(&plan.veth);
    let mut cmds = vec![json!({"add": {"table": {"family": "ip", "name": TABLE}}})];
    for (name, kind, hook, prio) in [
        (&pre, "nat", "prerouting", -100),
        (&out, "nat", "output", -100),
        (&post, "nat", "postrouting", 100),
        (&fwd, "filter", "forward", 0),
    ] {
        cmds.push(
            json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}}),
        );
    }
    let rule = |chain: &str, expr: Vec<Value>| json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}}});
    for p in &plan.publish {
        let proto = p.proto.to_string();
        let mut matches = vec![m(
            "==",
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            json!("local"),
        )];
        if let Some(h) = p.host_ip {
            matches.push(m("==", ip("daddr"), json!(h.to_string())));
        }
        matches.push(m(
            "==",
            json!({"payload": {"protocol": proto, "field": "dport"}}),
            json!(p.host_port),
        ));
        let mut expr = matches.clone();
        expr.push(json!({"dnat": {"addr": a, "port": p.port}}));
        cmds.push(rule(&pre, expr.clone()));
        cmds.push(rule(&out, expr));
    }
    // Published traffic from the host's loopback addresses or from the network itself
    // (hairpin) leaves with the gateway's address, so the replies come back through NAT.
    for from in [
        prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
        prefix(def.subnet.addr, def.subnet.prefix),
    ] {
        cmds.push(rule(
            &post,
            vec![
                m("==", ip("daddr"), json!(a)),
                m("in", ct("status"), json!("dnat")),
                m("==", ip("saddr"), from),
                json!({"masquerade": null}),
            ],
        ));
    }
    if plan.outbound.value {
        cmds.push(rule(
            &post,
            vec![
                m("==", ip("saddr"), json!(a)),
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
                m("==", ip("saddr"), json!(a)),
                m("in", ct("state"), json!("new")),
                json!({"drop": null}),
            ],
        ));
    }
    // Reachable from elsewhere only through its published ports: other networks' sandboxes
    // and other hosts cannot open connections to its address.
    cmds.push(rule(
        &fwd,
        vec![
            m("==", ip("daddr"), json!(a)),
            m("in", ct("status"), json!("dnat")),
            json!({"accept": null}),
        ],
    ));
    cmds.push(rule(
        &fwd,
        vec![
            m("==", meta("oifname"), json!(br)),
            m("!=", meta("iifname"), json!(br)),
            m("==", ip("daddr"), json!(a)),
            m("in", ct("state"), json!("new")),
            json!({"drop": null}),
        ],
    ));
    run(
        &json!({"nftables": cmds}),
        &format!("add the nftables rules of {}", plan.veth),
    )
    .map(drop)
}

/// Deletes the sandbox's chains (those that exist), and the table when no chain is left.
/// Returns whether stockade's table is gone.
pub fn remove(veth: &str) -> Result<bool, SetupError> {
    let step = format!("remove the nftables rules of {veth}");
    let Some(chains) = chains()? else {
        return Ok(true);
    };
    let mine = chain_names(veth);
    let mut cmds = Vec::new();
    for c in chains.iter().filter(|c| mine.contains(c)) {
        let id = json!({"family": "ip", "table": TABLE, "name": c});
        cmds.push(json!({"flush": {"chain": id.clone()}}));
        cmds.push(json!({"delete": {"chain": id}}));
    }
    let last = chains.iter().all(|c| mine.contains(c));
    if last {
        cmds.push(json!({"delete": {"table": {"family": "ip", "name": TABLE}}}));
    }
    if !cmds.is_empty() {
        run(&json!({"nftables": cmds}), &step)?;
    }
    Ok(last)
}

/// The chains of stockade's table; None when there is no table.
pub fn chains() -> Result<Option<Vec<String>>, SetupError> {
    let step = "list stockade's nftables table";
    let out = Command::new(NFT)
        .args(["-j", "list", "table", "ip", TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SetupError::other(step, format!("cannot run {NFT}: {e}")))?;
    if !out.status.success() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| SetupError::other(step, format!("{NFT} printed what is not JSON: {e}")))?;
    Ok(Some(
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["chain"]["name"].as_str().map(str::to_owned))
            .collect(),
    ))
}
