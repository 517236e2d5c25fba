//! `route_localnet` on a bridge an admin made. The host's own 127.0.0.1 reaches a published
//! port by DNAT in the output hook, and the kernel routes such a packet out of the bridge
//! only when the bridge's `net.ipv4.conf.BRIDGE.route_localnet` is 1. A bridge stockade
//! makes gets it set as it is made (and it goes with the bridge); an admin's bridge stays,
//! so its value is set only when a sandbox publishes a port the host's loopback may reach,
//! kept in the network's state directory first (`route_localnet.saved`), and written back
//! with the network's last sandbox, by its own exit or by `stockade cleanup` after SIGKILL.
//! Called with the network's lock held.

use super::sysctl;
use crate::plan::NetworkPlan;
use crate::sandbox::error::SetupError;
use std::fs;
use std::path::Path;

const SAVED: &str = "route_localnet.saved";

/// The sysctl of `bridge`.
pub fn name(bridge: &str) -> String {
    format!("net/ipv4/conf/{bridge}/route_localnet")
}

/// The step string of setting it (its errors and its fault point).
pub fn step(bridge: &str) -> String {
    format!("set route_localnet on the bridge {bridge}")
}

/// Whether a published port may be reached through the host's 127.0.0.1 (published on
/// every address, or on a loopback one).
fn needed(plan: &NetworkPlan) -> bool {
    plan.publish
        .iter()
        .any(|p| p.value.host_ip.is_none_or(|ip| ip.is_loopback()))
}

/// Sets route_localnet on the admin's bridge when this sandbox needs it, keeping the
/// admin's value (once: a second sandbox finds it kept and the value already 1).
pub fn on_admin_bridge(plan: &NetworkPlan) -> Result<(), SetupError> {
    if !needed(plan) {
        return Ok(());
    }
    let bridge = &plan.def.bridge;
    let step = step(bridge);
    super::fault::point(&step)?;
    let now = sysctl(&step, &name(bridge), None)?;
    if now == "1" {
        return Ok(());
    }
    let saved = plan.state_dir.join(SAVED);
    if !saved.exists() {
        fs::write(&saved, format!("{bridge} {now}\n"))
            .map_err(|e| SetupError::other(&step, format!("{}: {e}", saved.display())))?;
    }
    sysctl(&step, &name(bridge), Some("1")).map(drop)
}

/// Writes the admin's value back, when stockade changed it: the network's last sandbox is
/// gone. A bridge the admin removed meanwhile has nothing to restore.
pub fn restore(dir: &Path) -> Result<(), SetupError> {
    let saved = dir.join(SAVED);
    let Ok(text) = fs::read_to_string(&saved) else {
        return Ok(());
    };
    let mut w = text.split_whitespace();
    let (Some(bridge), Some(old)) = (w.next(), w.next()) else {
        let _ = fs::remove_file(&saved);
        return Ok(());
    };
    let step = format!("restore route_localnet on the bridge {bridge}");
    let there = super::netlink::Rtnl::open()
        .and_then(|mut nl| nl.index(bridge))
        .map_err(|e| super::refused(&step, format!("RTM_GETLINK {bridge}"), e))?;
    if there.is_some() {
        sysctl(&step, &name(bridge), Some(old))?;
    }
    let _ = fs::remove_file(&saved);
    Ok(())
}
