//! A bridge sandbox's network, host side and inside: the lease of its address, the bridge
//! (created for the first sandbox of a network, removed after the last when stockade made
//! it), the veth pair whose inner end is born as `eth0` in init's network namespace, and,
//! inside, eth0's address and the default route. Takes the plan's [`NetworkPlan`] only.
//!
//! Locking: one flock(2) on the network's `lock` file serialises every change to its leases
//! and its bridge, so sandboxes started at once get distinct addresses and a bridge is never
//! removed while another sandbox is joining it. The lease is a file named after the address
//! in `leases/`; `bridge-created` marks a bridge stockade made (and may remove).

mod fault;
mod localnet;
mod netlink;
mod nft;

use super::error::SetupError;
use crate::plan::NetworkPlan;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The name the inner end of the veth pair has inside the sandbox.
pub const INNER: &str = "eth0";

const CREATED_MARK: &str = "bridge-created";

/// A kernel refusal of a netlink request, with a hint naming the module when the kernel
/// lacks the kind of link.
fn refused(step: &str, call: String, e: io::Error) -> SetupError {
    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    // The kind of link is the module's name: the kernel could not find or load it.
    let kind = ["veth", "bridge"]
        .into_iter()
        .find(|k| call.contains(&format!(" type {k}")));
    let mut err = SetupError::sys(step, call, errno);
    if matches!(errno, nix::errno::Errno::EOPNOTSUPP) {
        err.detail = Some(match kind {
            Some(k) => format!("the kernel lacks the `{k}` module, or cannot load it: modprobe {k}"),
            None => "the kernel lacks this kind of interface: load the module (modprobe veth, modprobe bridge)".into(),
        });
    }
    err
}

/// The network's lock, held while leases or the bridge change. The last sandbox removes the
/// network's directory, lock file included, while holding it: a start that locked the file
/// meanwhile sees its inode gone from the path and tries again.
fn lock(dir: &Path) -> Result<Flock<File>, SetupError> {
    use std::os::unix::fs::MetadataExt;
    let step = "lock the network's leases";
    let leases = dir.join("leases");
    let path = dir.join("lock");
    loop {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&leases)
            .map_err(|e| SetupError::other(step, format!("{}: {e}", leases.display())))?;
        let held = lock_file(&path, step)?;
        let same = match (held.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same && leases.is_dir() {
            return Ok(held);
        }
    }
}

/// The sandbox's place on its network: its lease and its share of the bridge. Dropped, it
/// gives both back (the veth goes with the sandbox's network namespace).
pub struct Attachment {
    plan: NetworkPlan,
    pub address: Ipv4Addr,
    lease: PathBuf,
    /// The process that made it: a cloned child holding a copy never gives it back.
    owner: u32,
}

impl Attachment {
    /// Leases an address and makes sure the bridge exists, under the network's lock.
    pub fn prepare(plan: &NetworkPlan) -> Result<Attachment, SetupError> {
        let dir = &plan.state_dir;
        let held = lock(dir)?;
        let unleased = Unleased(plan);
        let leases = dir.join("leases");
        sweep(&leases);
        let taken: Vec<Ipv4Addr> = fs::read_dir(&leases)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let def = &plan.def;
        let address = match &plan.address {
            Some(a) if taken.contains(&a.value) => {
                return Err(SetupError::other(
                    "lease the address",
                    format!(
                        "{} is already leased on network `{}` ({})",
                        a.value, def.name, a.from
                    ),
                ))
            }
            Some(a) => a.value,
            None => def
                .subnet
                .hosts()
                .find(|ip| *ip != def.gateway && !taken.contains(ip))
                .ok_or_else(|| {
                    SetupError::other(
                        "lease an address",
                        format!(
                            "every address of {} on network `{}` is leased",
                            def.subnet, def.name
                        ),
                    )
                })?,
        };
        let lease = leases.join(address.to_string());
        fault::point("lease the address")?;
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&lease)
            .map_err(|e| {
                SetupError::other("lease the address", format!("{}: {e}", lease.display()))
            })?;
        let me = crate::host::Host::current().proc_id(std::process::id());
        let _ = writeln!(
            f,
            "{}",
            me.map_or(String::new(), |p| format!(
                "{} {} {}",
                p.pid, p.start_time, plan.veth
            ))
        );
        std::mem::forget(unleased);
        let me = Attachment {
            plan: plan.clone(),
            address,
            lease,
            owner: std::process::id(),
        };
        // From here on, dropping `me` gives the lease back (and a bridge made below), which
        // takes the lock again: it is released first.
        let made = me.ensure_bridge();
        drop(held);
        made?;
        me.add_rules()?;
        me.write_files()?;
        Ok(me)
    }

    /// The sandbox's nftables chains, with forwarding on (remembering the host's setting).
    fn add_rules(&self) -> Result<(), SetupError> {
        let _global = global_lock()?;
        // Rules first: when nft cannot run, forwarding is never touched.
        fault::point(&format!("add the nftables rules of {}", self.plan.veth))?;
        nft::add(&self.plan, self.address)?;
        forwarding_on()
    }

    /// The sandbox's /etc/hosts (its name at its address) and /etc/resolv.conf (the
    /// planned name servers), bound read-only over the root's.
    fn write_files(&self) -> Result<(), SetupError> {
        let p = &self.plan;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
            self.address, p.hostname
        );
        let resolv: String = p
            .dns
            .value
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
        fault::point("write the sandbox's hosts and resolv.conf")?;
        for (path, text) in [(&p.hosts_file, hosts), (&p.resolv_file, resolv)] {
            fs::write(path, text).map_err(|e| {
                SetupError::other(
                    "write the sandbox's hosts and resolv.conf",
                    format!("{}: {e}", path.display()),
                )
            })?;
        }
        Ok(())
    }

    fn ensure_bridge(&self) -> Result<(), SetupError> {
        let def = &self.plan.def;
        let step = format!("create the bridge {} of network `{}`", def.bridge, def.name);
        let mut nl = netlink::Rtnl::open()
            .map_err(|e| refused(&step, "socket(AF_NETLINK, NETLINK_ROUTE)".into(), e))?;
        if nl
            .index(&def.bridge)
            .map_err(|e| refused(&step, format!("RTM_GETLINK {}", def.bridge), e))?
            .is_some()
        {
            // Stockade's (made for another sandbox) has route_localnet; an admin's may not.
            if self.plan.state_dir.join(CREATED_MARK).exists() {
                return Ok(());
            }
            return localnet::on_admin_bridge(&self.plan);
        }
        // Marked before it is made: a stockade killed in between leaves a mark the next
        // cleanup reads (removing a bridge that is absent is no harm).
        let mark = self.plan.state_dir.join(CREATED_MARK);
        fs::write(&mark, &def.bridge)
            .map_err(|e| SetupError::other(&step, format!("{}: {e}", mark.display())))?;
        fault::point(&step)?;
        nl.add_bridge(&def.bridge, def.mtu).map_err(|e| {
            refused(
                &step,
                format!("RTM_NEWLINK {} type bridge mtu {}", def.bridge, def.mtu),
                e,
            )
        })?;
        let index = nl
            .index(&def.bridge)
            .map_err(|e| refused(&step, format!("RTM_GETLINK {}", def.bridge), e))?
            .ok_or_else(|| SetupError::other(&step, "the bridge vanished as it was made"))?;
        let step = format!("address the bridge {}", def.bridge);
        fault::point(&step)?;
        nl.add_address(index, def.gateway, def.subnet.prefix)
            .map_err(|e| {
                refused(
                    &step,
                    format!(
                        "RTM_NEWADDR {}/{} dev {}",
                        def.gateway, def.subnet.prefix, def.bridge
                    ),
                    e,
                )
            })?;
        // The host's own 127.0.0.1 reaches published ports through the bridge (see nft.rs);
        // the setting is the bridge's and goes with it.
        let step = localnet::step(&def.bridge);
        fault::point(&step)?;
        sysctl(&step, &localnet::name(&def.bridge), Some("1"))?;
        nl.set_up(index)
            .map_err(|e| refused(&step, format!("RTM_SETLINK {} up", def.bridge), e))
    }

    /// Creates the veth pair: the host end on the bridge and up, the other end born as
    /// eth0 in the network namespace of `init` (a host pid).
    pub fn attach(&self, init: u32) -> Result<(), SetupError> {
        let def = &self.plan.def;
        let step = format!("connect the sandbox to network `{}`", def.name);
        fault::point(&step)?;
        let ns_path = format!("/proc/{init}/ns/net");
        let ns = File::open(&ns_path)
            .map_err(|e| SetupError::other(&step, format!("{ns_path}: {e}")))?;
        let mut nl = netlink::Rtnl::open()
            .map_err(|e| refused(&step, "socket(AF_NETLINK, NETLINK_ROUTE)".into(), e))?;
        let master = nl
            .index(&def.bridge)
            .map_err(|e| refused(&step, format!("RTM_GETLINK {}", def.bridge), e))?
            .ok_or_else(|| {
                SetupError::other(&step, format!("the bridge {} is gone", def.bridge))
            })?;
        nl.add_veth(
            &self.plan.veth,
            INNER,
            ns.as_fd(),
            master,
            def.mtu,
            mac(self.address),
        )
        .map_err(|e| {
            refused(
                &step,
                format!(
                    "RTM_NEWLINK {} type veth peer {INNER} netns {ns_path} master {}",
                    self.plan.veth, def.bridge
                ),
                e,
            )
        })
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return;
        }
        if let Err(e) = self.release() {
            tracing::warn!("{e}");
        }
    }
}

impl Attachment {
    /// Removes the veth (the namespace would take it too, but only once the kernel has
    /// torn the namespace down, later), gives the lease back; the last sandbox removes a
    /// bridge stockade made and the network's state directory.
    fn release(&self) -> Result<(), SetupError> {
        let dir = &self.plan.state_dir;
        let step = format!("remove the veth {}", self.plan.veth);
        let removed = netlink::Rtnl::open()
            .and_then(|mut nl| match nl.index(&self.plan.veth)? {
                Some(i) => nl.del_link(i),
                None => Ok(()),
            })
            .map_err(|e| refused(&step, format!("RTM_DELLINK {}", self.plan.veth), e));
        let rules = remove_rules(std::slice::from_ref(&self.plan.veth));
        let _lock = lock(dir)?;
        let _ = fs::remove_file(&self.plan.hosts_file);
        let _ = fs::remove_file(&self.plan.resolv_file);
        let _ = fs::remove_file(&self.lease);
        sweep(&dir.join("leases"));
        let bridge = remove_unused_bridge(dir, &self.plan.def.bridge);
        removed.and(rules).and(bridge)
    }
}

/// eth0's MAC address, made of its IPv4 address (locally administered, unicast): a host
/// or a bridge that lives on (an admin's, or one another sandbox keeps) still holds the
/// neighbour entry of an address's earlier lease, and a new random MAC behind it would be
/// unreachable until that entry expires (some 30 s).
fn mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x53, a, b, c, d]
}

/// Until the lease is taken: a start that fails before it leaves no empty state directory
/// (nor a bridge no lease uses) behind. Dropped with the network's lock held.
struct Unleased<'a>(&'a NetworkPlan);

impl Drop for Unleased<'_> {
    fn drop(&mut self) {
        if let Err(e) = remove_unused_bridge(&self.0.state_dir, &self.0.def.bridge) {
            tracing::warn!("{e}");
        }
    }
}

/// Removes the leases of supervisors that are gone (a stockade killed with SIGKILL): each
/// lease names its supervisor's pid and start time. Called with the network's lock held.
fn sweep(leases: &Path) {
    let host = crate::host::Host::current();
    let mut stale = Vec::new();
    for e in fs::read_dir(leases).into_iter().flatten().flatten() {
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let mut w = text.split_whitespace();
        let pid = w.next().and_then(|p| p.parse().ok());
        let start = w.next().and_then(|s| s.parse().ok());
        let alive = match (pid, start) {
            (Some(pid), Some(start_time)) => {
                host.is_running(crate::host::ProcId { pid, start_time })
            }
            // Being written right now by a start holding the lock cannot be: we hold it.
            _ => false,
        };
        if !alive {
            if let (Some(veth), Some(dir)) = (w.next(), leases.parent()) {
                let _ = fs::remove_file(dir.join(format!("{veth}.hosts")));
                let _ = fs::remove_file(dir.join(format!("{veth}.resolv.conf")));
                stale.push(veth.to_owned());
            }
            let _ = fs::remove_file(e.path());
        }
    }
    // Its veth went with its namespace; its rules are still in the table.
    if let Err(e) = remove_rules(&stale) {
        tracing::warn!("{e}");
    }
}

/// Serialises changes to stockade's nftables table and to the forwarding sysctl, which
/// every network shares.
fn global_lock() -> Result<Flock<File>, SetupError> {
    let step = "lock stockade's nftables table";
    lock_file(&Path::new(crate::plan::RUN_DIR).join("network.lock"), step)
}

/// `path` (made when missing, root's alone), locked exclusively; waits for the holder.
fn lock_file(path: &Path, step: &str) -> Result<Flock<File>, SetupError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| SetupError::other(step, format!("{}: {e}", path.display())))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| SetupError::sys(step, format!("flock({}, LOCK_EX)", path.display()), e))
}

const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// Reads a sysctl (`net/ipv4/ip_forward`) and writes `value` when given, through a detached
/// proc mount of stockade's own: the host's /proc/sys may be read-only (a container), and a
/// network sysctl is the namespace's of the process that opens it.
fn sysctl(step: &str, name: &str, value: Option<&str>) -> Result<String, SetupError> {
    use std::os::fd::AsRawFd;
    let proc = super::mounts::new_mount(step, "proc", &[], 0)?;
    // Reached through its descriptor only, never attached anywhere.
    let path = format!("/proc/self/fd/{}/sys/{name}", proc.as_raw_fd());
    let old = fs::read_to_string(&path)
        .map_err(|e| SetupError::other(step, format!("/proc/sys/{name}: {e}")))?;
    if let Some(v) = value {
        fs::write(&path, v)
            .map_err(|e| SetupError::other(step, format!("write(/proc/sys/{name}, {v:?}): {e}")))?;
    }
    Ok(old.trim().to_owned())
}

/// Where the host's ip_forward is kept while stockade has it on.
fn saved_forwarding() -> PathBuf {
    Path::new(crate::plan::RUN_DIR).join("ip_forward.saved")
}

/// Routing between the bridge and the host's other interfaces (NAT, published ports) needs
/// net.ipv4.ip_forward; the host's value is kept to be restored with the last sandbox.
fn forwarding_on() -> Result<(), SetupError> {
    let step = "turn on IPv4 forwarding";
    fault::point(step)?;
    let now = sysctl(step, IP_FORWARD, None)?;
    if now == "1" {
        return Ok(());
    }
    let saved = saved_forwarding();
    if !saved.exists() {
        fs::write(&saved, &now)
            .map_err(|e| SetupError::other(step, format!("{}: {e}", saved.display())))?;
    }
    sysctl(step, IP_FORWARD, Some("1")).map(drop)
}

/// Removes the rules of these sandboxes; with the table gone, the host's forwarding
/// setting comes back.
fn remove_rules(veths: &[String]) -> Result<(), SetupError> {
    if veths.is_empty() {
        return Ok(());
    }
    let _global = global_lock()?;
    let mut table_gone = false;
    for v in veths {
        table_gone = nft::remove(v)?;
    }
    let saved = saved_forwarding();
    if table_gone && saved.exists() {
        let old = fs::read_to_string(&saved).unwrap_or_else(|_| "0".into());
        sysctl("restore IPv4 forwarding", IP_FORWARD, Some(old.trim()))?;
        let _ = fs::remove_file(&saved);
    }
    Ok(())
}

/// `stockade cleanup`: for every network, the leases of supervisors that are gone and their
/// rules, and a bridge stockade made that no sandbox uses any more.
pub fn cleanup() -> Result<(), SetupError> {
    let dirs = match fs::read_dir(crate::plan::network::NETWORKS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SetupError::other("list the networks", e.to_string())),
    };
    for d in dirs.flatten() {
        let dir = d.path();
        let held = lock(&dir)?;
        sweep(&dir.join("leases"));
        let bridge = fs::read_to_string(dir.join(CREATED_MARK)).unwrap_or_default();
        remove_unused_bridge(&dir, bridge.trim())?;
        drop(held);
    }
    Ok(())
}

/// Removes the network's bridge when no lease is left and stockade made it. Called with the
/// network's lock held.
fn remove_unused_bridge(dir: &Path, bridge: &str) -> Result<(), SetupError> {
    let in_use = fs::read_dir(dir.join("leases"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let mark = dir.join(CREATED_MARK);
    if in_use {
        return Ok(());
    }
    if !mark.exists() {
        // An admin's bridge stays, with its own route_localnet; stockade's state goes.
        localnet::restore(dir)?;
        let _ = fs::remove_dir(dir.join("leases"));
        let _ = fs::remove_file(dir.join("lock"));
        let _ = fs::remove_dir(dir);
        return Ok(());
    }
    let step = format!("remove the bridge {bridge}");
    let mut nl = netlink::Rtnl::open()
        .map_err(|e| refused(&step, "socket(AF_NETLINK, NETLINK_ROUTE)".into(), e))?;
    if let Some(index) = nl
        .index(bridge)
        .map_err(|e| refused(&step, format!("RTM_GETLINK {bridge}"), e))?
    {
        nl.del_link(index)
            .map_err(|e| refused(&step, format!("RTM_DELLINK {bridge}"), e))?;
    }
    let _ = fs::remove_file(&mark);
    let _ = fs::remove_dir(dir.join("leases"));
    let _ = fs::remove_file(dir.join("lock"));
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// Inside the sandbox's network namespace (init, with CAP_NET_ADMIN over it): eth0 gets its
/// address and is brought up, and the default route goes via the gateway.
pub fn configure_inside(plan: &NetworkPlan, address: Ipv4Addr) -> Result<(), SetupError> {
    let def = &plan.def;
    let step = "configure eth0";
    fault::point(step)?;
    let mut nl = netlink::Rtnl::open()
        .map_err(|e| refused(step, "socket(AF_NETLINK, NETLINK_ROUTE)".into(), e))?;
    let index = nl
        .index(INNER)
        .map_err(|e| refused(step, format!("RTM_GETLINK {INNER}"), e))?
        .ok_or_else(|| SetupError::other(step, "eth0 did not arrive in the sandbox"))?;
    nl.add_address(index, address, def.subnet.prefix)
        .map_err(|e| {
            refused(
                step,
                format!("RTM_NEWADDR {address}/{} dev {INNER}", def.subnet.prefix),
                e,
            )
        })?;
    nl.set_up(index)
        .map_err(|e| refused(step, format!("RTM_SETLINK {INNER} up"), e))?;
    nl.add_default_route(def.gateway)
        .map_err(|e| refused(step, format!("RTM_NEWROUTE default via {}", def.gateway), e))
}
