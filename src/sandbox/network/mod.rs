//! A bridge sandbox's network, host side and inside: the lease of its addresses (IPv4, and
//! IPv6 on a network with subnet6), the bridge (created for the first sandbox of a network,
//! removed after the last when stockade made it), the veth pair whose inner end is born as
//! `eth0` in init's network namespace, and, inside, eth0's addresses and default routes.
//! Takes the plan's [`NetworkPlan`] only.
//!
//! Locking: one flock(2) on the network's `lock` file serialises every change to its leases
//! and its bridge, so sandboxes started at once get distinct addresses and a bridge is never
//! removed while another sandbox is joining it. A lease is a file named after the address
//! in `leases/` (one per family, both taken under one hold of the lock, both with the same
//! words: the supervisor, the veth, the IPv6 address, an `outbound` other than the
//! network's, the published ports; a sweep rebuilds
//! the sandbox's nftables entry from the IPv4 one); `bridge-created` marks a bridge stockade
//! made (and may remove); `rules` marks (and names) the network's shared nftables rules,
//! added with its first sandbox and removed with its last lease (see nft.rs). Lock order:
//! the network's lock, then the global one.

mod fault;
mod forward;
mod localnet;
mod netlink;
mod nft;
mod orphans;

use super::error::SetupError;
use crate::plan::NetworkPlan;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The name the inner end of the veth pair has inside the sandbox.
pub const INNER: &str = "eth0";

const CREATED_MARK: &str = "bridge-created";

/// Marks a network whose shared rules are (or, while its first start's nft runs, may be)
/// in the table, naming them ([`nft::Net::line`]): written before the run that adds them,
/// removed when that run fails or before the run that removes them.
const RULES_MARK: &str = "rules";

/// The network's shared rules its marker names, when it has one.
fn net_rules(dir: &Path) -> Option<nft::Net> {
    nft::Net::from_line(&fs::read_to_string(dir.join(RULES_MARK)).ok()?)
}

/// A kernel refusal of a netlink request.
fn refused(step: &str, call: String, e: io::Error) -> SetupError {
    link_refused(step, call, None, e)
}

/// A kernel refusal of a request that makes a link of `kind` (`veth`, `bridge`: the kind
/// is the module's name), with a hint naming the module when the kernel lacks it.
fn link_refused(step: &str, call: String, kind: Option<&str>, e: io::Error) -> SetupError {
    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
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
    /// The IPv6 address, on a network with subnet6.
    pub address6: Option<Ipv6Addr>,
    lease: PathBuf,
    lease6: Option<PathBuf>,
    /// What it has (or will have) in stockade's nftables table.
    entry: nft::Entry,
    /// Whether its rules went in: a start whose transaction was refused has none to remove.
    rules: bool,
    /// Whether its start's transaction added its network's shared rules too (it wrote
    /// the network's marker, and takes it back when the transaction fails).
    net_added: bool,
    /// Its published TCP ports on [::1], forwarded in user space (see forward.rs); set by
    /// `attach`, after the last clone, since it runs threads.
    forwarder: std::cell::OnceCell<forward::Forwarder>,
    /// init's network namespace, from `attach` on: what is left in it once the sandbox is
    /// gone (see orphans.rs).
    netns: std::cell::OnceCell<orphans::Netns>,
    /// The start's nft run, until [`Attachment::rules_in_place`] reads its answer, and the
    /// global lock held for it meanwhile.
    adding: Option<(nft::Pending, Flock<File>)>,
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
        let taken: Vec<IpAddr> = fs::read_dir(&leases)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let def = &plan.def;
        let address = match &plan.address {
            Some(a) if taken.contains(&IpAddr::V4(a.value)) => {
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
                .find(|ip| *ip != def.gateway && !taken.contains(&IpAddr::V4(*ip)))
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
        let address6 = match (&def.ipv6, &plan.address6) {
            (None, _) => None,
            (Some(_), Some(a)) if taken.contains(&IpAddr::V6(a.value)) => {
                return Err(SetupError::other(
                    "lease the IPv6 address",
                    format!(
                        "{} is already leased on network `{}` ({})",
                        a.value, def.name, a.from
                    ),
                ))
            }
            (Some(_), Some(a)) => Some(a.value),
            // The first free one: a /64 has more than anyone leases, so this stops early.
            (Some(v6), None) => Some(
                v6.subnet
                    .hosts()
                    .find(|ip| *ip != v6.gateway && !taken.contains(&IpAddr::V6(*ip)))
                    .ok_or_else(|| {
                        SetupError::other(
                            "lease an IPv6 address",
                            format!(
                                "every address of {} on network `{}` is leased",
                                v6.subnet, def.name
                            ),
                        )
                    })?,
            ),
        };
        let entry = nft::Entry::of(plan, address, address6);
        // The lease names what a sweep after SIGKILL must remove: see sweep().
        let me = crate::host::Host::current().proc_id(std::process::id());
        let holder = me.map_or(String::new(), |p| {
            format!("{} {} {}", p.pid, p.start_time, entry.lease_words())
        });
        let lease = leases.join(address.to_string());
        fault::point("lease the address")?;
        write_lease(&lease, &holder, "lease the address")?;
        let lease6 = match address6 {
            None => None,
            Some(a6) => {
                let path = leases.join(a6.to_string());
                if let Err(e) = write_lease(&path, &holder, "lease the IPv6 address") {
                    // Nothing holds the IPv4 lease yet: give it back here.
                    let _ = fs::remove_file(&lease);
                    return Err(e);
                }
                Some(path)
            }
        };
        // Leased: from here on the Attachment gives back what is made.
        std::mem::forget(unleased);
        let mut me = Attachment {
            plan: plan.clone(),
            address,
            address6,
            lease,
            lease6,
            entry,
            rules: false,
            net_added: false,
            forwarder: std::cell::OnceCell::new(),
            netns: std::cell::OnceCell::new(),
            adding: None,
            owner: std::process::id(),
        };
        // From here on, dropping `me` gives the lease back (and a bridge made below), which
        // takes the locks again: they are released first.
        let done = me.set_up_host();
        drop(held);
        done?;
        me.write_files()?;
        Ok(me)
    }

    /// The bridge (when missing), and the sandbox's nftables rules started. nft runs on
    /// while the bridge is made and the sandbox is built, under the global lock, until
    /// [`Attachment::rules_in_place`]: its exit waits for an RCU grace period (see
    /// nft::Pending), which that work overlaps.
    ///
    /// The network's shared rules go in with its first sandbox: with the network's lock
    /// held, and then the global lock (which an earlier start holds until its run has
    /// answered), a marker tells whether they are in. A sandbox with nothing of its own
    /// (no published port, the network's `outbound`) then needs no nft run at all.
    fn set_up_host(&mut self) -> Result<(), SetupError> {
        let global = global_lock()?;
        let mark = self.plan.state_dir.join(RULES_MARK);
        let with_net = !mark.exists();
        // Rules first: when nft cannot run, neither the bridge nor forwarding is touched.
        let step = format!("add the nftables rules of {}", self.entry.veth);
        fault::point(&step)?;
        if with_net {
            // Before the run: a SIGKILL after it leaves a marker a sweep reads.
            fs::write(&mark, nft::Net::of(&self.plan).line())
                .map_err(|e| SetupError::other(&step, format!("{}: {e}", mark.display())))?;
            self.net_added = true;
        }
        match nft::add(&self.plan, &self.entry, with_net) {
            Ok(Some(rules)) => self.adding = Some((rules, global)),
            Ok(None) => {
                // The network's rules are in place: forwarding is on already, unless
                // someone turned it off meanwhile.
                self.rules = true;
                self.forwarding_on()?;
                drop(global);
            }
            Err(e) => {
                self.adding_failed();
                return Err(e);
            }
        }
        self.ensure_bridge()
    }

    /// Its start's transaction was refused (or never ran): the network's marker goes when
    /// that transaction was to add the network's rules. Called with the global lock held.
    fn adding_failed(&mut self) {
        if std::mem::take(&mut self.net_added) {
            let _ = fs::remove_file(self.plan.state_dir.join(RULES_MARK));
        }
    }

    /// IPv4 forwarding, and IPv6 forwarding for a sandbox with IPv6 (the host's settings
    /// are kept). Called with the global lock held.
    fn forwarding_on(&self) -> Result<(), SetupError> {
        for f in &FORWARDING {
            if f.v6 && self.address6.is_none() {
                continue;
            }
            forwarding_on(f)?;
        }
        Ok(())
    }

    /// Waits for the start's rules and turns forwarding on (remembering the host's
    /// setting). Called before the service may run: nothing of it is reachable, or reaches
    /// out, before its rules are in place.
    pub fn rules_in_place(&mut self) -> Result<(), SetupError> {
        let Some((rules, _global)) = self.adding.take() else {
            return Ok(());
        };
        if let Err(e) = rules.wait() {
            self.adding_failed();
            return Err(e);
        }
        self.rules = true;
        self.forwarding_on()
    }

    /// The sandbox's /etc/hosts (its name at its address) and /etc/resolv.conf (the
    /// planned name servers), bound read-only over the root's.
    fn write_files(&self) -> Result<(), SetupError> {
        let p = &self.plan;
        let mut hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
            self.address, p.hostname
        );
        if let Some(a6) = self.address6 {
            hosts.push_str(&format!("{a6}\t{}\n", p.hostname));
        }
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
            link_refused(
                &step,
                format!("RTM_NEWLINK {} type bridge mtu {}", def.bridge, def.mtu),
                Some("bridge"),
                e,
            )
        })?;
        let index = nl
            .index(&def.bridge)
            .map_err(|e| refused(&step, format!("RTM_GETLINK {}", def.bridge), e))?
            .ok_or_else(|| SetupError::other(&step, "the bridge vanished as it was made"))?;
        let step = format!("address the bridge {}", def.bridge);
        fault::point(&step)?;
        nl.add_address(index, IpAddr::V4(def.gateway), def.subnet.prefix)
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
        if let Some(v6) = &def.ipv6 {
            nl.add_address(index, IpAddr::V6(v6.gateway), v6.subnet.prefix)
                .map_err(|e| {
                    refused(
                        &step,
                        format!(
                            "RTM_NEWADDR {}/{} dev {} nodad",
                            v6.gateway, v6.subnet.prefix, def.bridge
                        ),
                        e,
                    )
                })?;
        }
        // The host's own 127.0.0.1 reaches published ports through the bridge (see nft.rs);
        // the setting is the bridge's and goes with it.
        let step = localnet::step(&def.bridge);
        fault::point(&step)?;
        nl.set_up_route_localnet(index).map_err(|e| {
            refused(
                &step,
                format!("RTM_SETLINK {} up route_localnet 1", def.bridge),
                e,
            )
        })
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
            link_refused(
                &step,
                format!(
                    "RTM_NEWLINK {} type veth peer {INNER} netns {ns_path} master {}",
                    self.plan.veth, def.bridge
                ),
                Some("veth"),
                e,
            )
        })?;
        let _ = self.netns.set(orphans::Netns::new(init, ns));
        // [::1] cannot be NATed: its published TCP ports are forwarded by the supervisor.
        if let Some(a6) = self.address6 {
            if self.entry.publish.iter().any(forward::covers_loopback) {
                let f = forward::Forwarder::start(&self.entry.publish, a6)?;
                let _ = self.forwarder.set(f);
            }
        }
        Ok(())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return;
        }
        // The [::1] listeners first: no new connection while the rules go.
        drop(self.forwarder.take());
        if let Err(e) = self.release() {
            tracing::warn!("{e}");
        }
    }
}

impl Attachment {
    /// Takes the veth off the bridge, gives the lease back and removes the sandbox's
    /// rules; the last sandbox of the network removes a bridge stockade made and the
    /// network's state directory, the last of all networks stockade's table. The nft run
    /// goes on while the bridge is removed: both wait for RCU grace periods, which overlap.
    ///
    /// The veth itself goes with init's network namespace: the kernel deletes the pair in
    /// its own worker moments after the namespace's last process is gone. Deleting it here
    /// instead waits in `netdev_run_todo()`'s `rcu_barrier()`, 25–30 ms, which was most of
    /// what a bridge added to a launch joining its network. Off the bridge at once, a port
    /// that lingers (say, a namespace someone still holds) cannot take the frames of the
    /// address's next lease, which has the same MAC.
    fn release(&mut self) -> Result<(), SetupError> {
        // A start that failed before its rules were waited for: their answer decides what
        // there is to remove. Its global lock goes before the network's lock is taken (the
        // order every path takes them in is network, then global).
        if let Some((rules, global)) = self.adding.take() {
            self.rules = rules.wait().is_ok();
            if !self.rules {
                self.adding_failed();
            }
            drop(global);
        }
        let dir = &self.plan.state_dir;
        let step = format!("take the veth {} off its bridge", self.plan.veth);
        let _lock = lock(dir)?;
        // While the veth is still on the bridge, so the aborted connections' resets reach
        // their peers. Where they cannot be aborted the veth is deleted, at that cost.
        let lingers = self.netns.take().is_some_and(|ns| {
            fault::point("abort the closed connections")
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| ns.abort_orphans())
                .map_err(|e| tracing::debug!("closed connections of {}: {e}", self.plan.veth))
                .is_err()
        });
        let removed = netlink::Rtnl::open()
            .and_then(|mut nl| match nl.index(&self.plan.veth)? {
                Some(i) if lingers => nl.del_link(i),
                Some(i) => nl.set_nomaster(i),
                None => Ok(()),
            })
            .map_err(|e| refused(&step, format!("RTM_SETLINK {} nomaster", self.plan.veth), e));
        let _ = fs::remove_file(&self.plan.hosts_file);
        let _ = fs::remove_file(&self.plan.resolv_file);
        let _ = fs::remove_file(&self.lease);
        if let Some(l) = &self.lease6 {
            let _ = fs::remove_file(l);
        }
        sweep(&dir.join("leases"));
        let global = global_lock()?;
        let mine: Vec<PathBuf> = std::iter::once(self.lease.clone())
            .chain(self.lease6.clone())
            .collect();
        let last = !others_remain(&mine);
        // The network's last sandbox takes its shared rules (sweep() left no dead lease).
        let net = net_rules(dir);
        let net_goes = leases_empty(dir);
        if net_goes {
            let _ = fs::remove_file(dir.join(RULES_MARK));
        }
        let own: &[nft::Entry] = match self.rules {
            true => std::slice::from_ref(&self.entry),
            false => &[],
        };
        let rules = nft::remove(own, net.as_ref(), net_goes, last);
        let bridge = remove_unused_bridge(dir, &self.plan.def.bridge);
        let rules = match rules {
            Ok(Some(pending)) => pending.wait().and_then(|()| match last {
                true => restore_forwarding(),
                false => Ok(()),
            }),
            other => other.map(drop),
        };
        drop(global);
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
    let mut gone = Vec::new();
    let mut live_veths = Vec::new();
    for e in fs::read_dir(leases).into_iter().flatten().flatten() {
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let mut w = text.split_whitespace();
        // The IPv4 lease names the whole entry (its IPv6 address too); an IPv6 lease only
        // goes with it.
        let address = e
            .file_name()
            .to_str()
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        // Being written right now by a start holding the lock cannot be: we hold it.
        let alive = lease_alive(&host, &mut w);
        let entry = address.and_then(|a| nft::Entry::from_lease(a, w));
        if alive {
            live_veths.extend(entry.map(|e| e.veth));
            continue;
        }
        if let (Some(entry), Some(dir)) = (entry, leases.parent()) {
            let _ = fs::remove_file(dir.join(format!("{}.hosts", entry.veth)));
            let _ = fs::remove_file(dir.join(format!("{}.resolv.conf", entry.veth)));
            stale.push(entry);
        }
        gone.push(e.path());
    }
    if gone.is_empty() {
        return;
    }
    // Its veth goes with its namespace, unless a connection its service closed still
    // holds that (nobody aborted them, see orphans.rs): then it is deleted here. Never one
    // a live lease names (a supervisor that got the dead one's pid, and so its veth name).
    let lingering: Vec<&str> = stale
        .iter()
        .map(|e| e.veth.as_str())
        .filter(|v| !live_veths.iter().any(|l| l == v))
        .collect();
    if !lingering.is_empty() {
        if let Ok(mut nl) = netlink::Rtnl::open() {
            for v in lingering {
                if let Ok(Some(i)) = nl.index(v) {
                    if let Err(e) = nl.del_link(i) {
                        tracing::warn!("remove the veth {v} of a sandbox that is gone: {e}");
                    }
                }
            }
        }
    }
    // Its rules are still in the table, and its network's when no live lease is left.
    let net_goes = fs::read_dir(leases)
        .into_iter()
        .flatten()
        .flatten()
        .all(|l| gone.contains(&l.path()));
    if let Err(e) = remove_rules(leases.parent(), &stale, &gone, net_goes) {
        tracing::warn!("{e}");
    }
    for g in gone {
        let _ = fs::remove_file(g);
    }
}

/// Whether the supervisor a lease names (its first two words: pid and start time) runs.
fn lease_alive<'a>(host: &crate::host::Host, w: &mut impl Iterator<Item = &'a str>) -> bool {
    let pid = w.next().and_then(|p| p.parse().ok());
    let start = w.next().and_then(|s| s.parse().ok());
    match (pid, start) {
        (Some(pid), Some(start_time)) => host.is_running(crate::host::ProcId { pid, start_time }),
        _ => false,
    }
}

/// Whether a sandbox of any network, other than those whose leases are `leaving`, still
/// runs: the leases decide, not the table (listing it costs an nft run). Called with the
/// global lock held. A start that has not written its lease yet adds the table again after
/// this, under the same lock, so deciding "last" without it is safe.
fn others_remain(leaving: &[PathBuf]) -> bool {
    let host = crate::host::Host::current();
    let networks = fs::read_dir(crate::plan::network::NETWORKS_DIR).into_iter();
    networks
        .flatten()
        .flatten()
        .flat_map(|n| fs::read_dir(n.path().join("leases")).into_iter().flatten())
        .flatten()
        .filter(|l| !leaving.contains(&l.path()))
        .any(|l| {
            let text = fs::read_to_string(l.path()).unwrap_or_default();
            lease_alive(&host, &mut text.split_whitespace())
        })
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

/// A forwarding sysctl stockade turns on while a sandbox routes through the host, and the
/// file below RUN_DIR where the host's value is kept until the last sandbox is gone.
struct Forwarding {
    sysctl: &'static str,
    saved: &'static str,
    what: &'static str,
    v6: bool,
}

/// IPv4 for every bridge sandbox; IPv6 for those with an IPv6 address. IPv6's is the `all`
/// setting, which the kernel copies to every interface; with it on, the host ignores
/// router advertisements on interfaces with accept_ra=1 (as with Docker's IPv6).
const FORWARDING: [Forwarding; 2] = [
    Forwarding {
        sysctl: "net/ipv4/ip_forward",
        saved: "ip_forward.saved",
        what: "IPv4 forwarding",
        v6: false,
    },
    Forwarding {
        sysctl: "net/ipv6/conf/all/forwarding",
        saved: "ipv6_forwarding.saved",
        what: "IPv6 forwarding",
        v6: true,
    },
];

/// Creates a lease file naming its holder ("PID START_TIME WORDS..."); fails when it exists.
fn write_lease(path: &Path, holder: &str, step: &str) -> Result<(), SetupError> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SetupError::other(step, format!("{}: {e}", path.display())))?;
    writeln!(f, "{holder}").map_err(|e| {
        // A lease nobody holds would keep its address taken until a sweep.
        let _ = fs::remove_file(path);
        SetupError::other(step, format!("write({}): {e}", path.display()))
    })
}

/// Reads a sysctl (`net/ipv4/ip_forward`) through the host's /proc and writes `value`
/// when given (see sysctl.rs); returns the value it had.
fn sysctl(step: &str, name: &str, value: Option<&str>) -> Result<String, SetupError> {
    let host = format!("/proc/sys/{name}");
    let old =
        fs::read_to_string(&host).map_err(|e| SetupError::other(step, format!("{host}: {e}")))?;
    if let Some(v) = value {
        super::sysctl::write(step, name, v)?;
    }
    Ok(old.trim().to_owned())
}

/// Routing between the bridge and the host's other interfaces (NAT, published ports) needs
/// forwarding on; the host's value is kept to be restored with the last sandbox.
fn forwarding_on(f: &Forwarding) -> Result<(), SetupError> {
    let step = format!("turn on {}", f.what);
    fault::point(&step)?;
    let now = sysctl(&step, f.sysctl, None)?;
    if now == "1" {
        return Ok(());
    }
    let saved = Path::new(crate::plan::RUN_DIR).join(f.saved);
    if !saved.exists() {
        fs::write(&saved, &now)
            .map_err(|e| SetupError::other(&step, format!("{}: {e}", saved.display())))?;
    }
    sysctl(&step, f.sysctl, Some("1")).map(drop)
}

/// Removes the rules of these sandboxes, whose leases are `leaving`; after the last sandbox
/// of all networks, the whole table, and the host's forwarding setting comes back.
fn remove_rules(
    dir: Option<&Path>,
    entries: &[nft::Entry],
    leaving: &[PathBuf],
    net_goes: bool,
) -> Result<(), SetupError> {
    let net = dir.and_then(net_rules);
    let network_goes = net_goes && net.is_some();
    if !network_goes && !entries.iter().any(|e| e.has_own()) {
        return Ok(());
    }
    let _global = global_lock()?;
    let last = !others_remain(leaving);
    if let (true, Some(d)) = (net_goes, dir) {
        let _ = fs::remove_file(d.join(RULES_MARK));
    }
    let Some(pending) = nft::remove(entries, net.as_ref(), net_goes, last)? else {
        return Ok(());
    };
    pending.wait()?;
    match last {
        true => restore_forwarding(),
        false => Ok(()),
    }
}

/// The host's forwarding setting as it was before the first sandbox, once the last is gone.
/// Called with the global lock held.
fn restore_forwarding() -> Result<(), SetupError> {
    for f in &FORWARDING {
        let saved = Path::new(crate::plan::RUN_DIR).join(f.saved);
        if saved.exists() {
            let old = fs::read_to_string(&saved).unwrap_or_else(|_| "0".into());
            sysctl(&format!("restore {}", f.what), f.sysctl, Some(old.trim()))?;
            let _ = fs::remove_file(&saved);
        }
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

/// Whether the network has no lease left.
fn leases_empty(dir: &Path) -> bool {
    fs::read_dir(dir.join("leases"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// Removes the network's bridge when no lease is left and stockade made it. Called with the
/// network's lock held.
fn remove_unused_bridge(dir: &Path, bridge: &str) -> Result<(), SetupError> {
    let in_use = !leases_empty(dir);
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
/// addresses and is brought up, and the default routes go via the gateways.
pub fn configure_inside(
    plan: &NetworkPlan,
    address: Ipv4Addr,
    address6: Option<Ipv6Addr>,
) -> Result<(), SetupError> {
    let def = &plan.def;
    let step = "configure eth0";
    fault::point(step)?;
    let mut nl = netlink::Rtnl::open()
        .map_err(|e| refused(step, "socket(AF_NETLINK, NETLINK_ROUTE)".into(), e))?;
    let index = nl
        .index(INNER)
        .map_err(|e| refused(step, format!("RTM_GETLINK {INNER}"), e))?
        .ok_or_else(|| SetupError::other(step, "eth0 did not arrive in the sandbox"))?;
    nl.add_address(index, IpAddr::V4(address), def.subnet.prefix)
        .map_err(|e| {
            refused(
                step,
                format!("RTM_NEWADDR {address}/{} dev {INNER}", def.subnet.prefix),
                e,
            )
        })?;
    let v6 = def.ipv6.zip(address6);
    if let Some((v6, a6)) = v6 {
        nl.add_address(index, IpAddr::V6(a6), v6.subnet.prefix)
            .map_err(|e| {
                refused(
                    step,
                    format!("RTM_NEWADDR {a6}/{} dev {INNER} nodad", v6.subnet.prefix),
                    e,
                )
            })?;
    }
    nl.set_up(index)
        .map_err(|e| refused(step, format!("RTM_SETLINK {INNER} up"), e))?;
    nl.add_default_route(IpAddr::V4(def.gateway))
        .map_err(|e| refused(step, format!("RTM_NEWROUTE default via {}", def.gateway), e))?;
    if let Some((v6, _)) = v6 {
        nl.add_default_route(IpAddr::V6(v6.gateway)).map_err(|e| {
            refused(
                step,
                format!("RTM_NEWROUTE default via {} dev {INNER}", v6.gateway),
                e,
            )
        })?;
    }
    Ok(())
}
