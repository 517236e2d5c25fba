//! The default walls, from the host's side: sandbox root is an unprivileged host id range of
//! its own (another sandbox's volume stays out of reach, an old root-owned volume is carried
//! over), notify relays are invisible to other sandboxes, scratch space is bounded, socket
//! families follow the profile, and `check` names every hole a profile opens on purpose.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

const ID_BASE: u32 = 0x6000_0000;

/// Removes what a test's profile names left in stockade's persistent state: its volumes
/// and its id-range claim.
struct State {
    volumes: Vec<String>,
    profiles: Vec<String>,
}

impl Drop for State {
    fn drop(&mut self) {
        for v in &self.volumes {
            let _ = fs::remove_dir_all(format!("/var/lib/stockade/volumes/{v}"));
        }
        for p in &self.profiles {
            let by_name = format!("/var/lib/stockade/ids/by-name/{p}");
            if let Ok(slot) = fs::read_to_string(&by_name) {
                let _ = fs::remove_file(format!("/var/lib/stockade/ids/by-slot/{}", slot.trim()));
            }
            let _ = fs::remove_file(by_name);
        }
    }
}

#[test]
fn another_sandboxs_volume_is_out_of_reach() {
    require_root();
    let m = marker();
    let (a, b, vol) = (format!("wa{m}"), format!("wb{m}"), format!("secret-{m}"));
    let _state = State {
        volumes: vec![vol.clone()],
        profiles: vec![a.clone(), b.clone()],
    };
    let profiles = Profiles::new();
    let owner = profiles.write(
        &a,
        &sh_profile(
            "umask 077; echo secret > /srv/data/file && cat /proc/self/uid_map",
            &m,
            &format!("[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"volume\"\nname = \"{vol}\"\ntarget = \"/srv/data\"\n"),
        ),
    );
    let out = Run::profile(&owner, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // No uid_map line maps host root (the second column) into the sandbox.
    for line in text(&out.stdout).lines() {
        let outside: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_ne!(outside, 0, "host root mapped: {line}");
    }
    let file = format!("/var/lib/stockade/volumes/{vol}/file");
    let meta = fs::metadata(&file).unwrap();
    assert!(
        meta.uid() >= ID_BASE && meta.gid() >= ID_BASE,
        "owner {}:{}",
        meta.uid(),
        meta.gid()
    );
    assert_eq!(meta.mode() & 0o777, 0o600);

    // Another profile's sandbox root, given the volume's directory by an explicit bind.
    let thief = profiles.write(
        &b,
        &sh_profile(
            "cat /srv/loot/file; echo read=$?; ls /srv/loot >/dev/null 2>&1; echo list=$?; ls /var/lib/stockade/volumes >/dev/null 2>&1; echo state=$?",
            &m,
            &format!("[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"bind\"\nsource = \"/var/lib/stockade/volumes/{vol}\"\ntarget = \"/srv/loot\"\n"),
        ),
    );
    let out = Run::profile(&thief, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = probe_values(&out);
    assert!(
        !text(&out.stdout).contains("secret"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(v.get("read").map(String::as_str), Some("1"), "{v:?}");
    assert_eq!(v.get("list").map(String::as_str), Some("2"), "{v:?}");
    assert_eq!(v.get("state").map(String::as_str), Some("2"), "{v:?}");
}

/// A volume made when sandbox root was host root is handed to the range's root at the next
/// start; a symlink in it is not followed.
#[test]
fn a_volume_owned_by_host_root_is_carried_over() {
    require_root();
    let m = marker();
    let (name, vol) = (format!("wc{m}"), format!("old-{m}"));
    let _state = State {
        volumes: vec![vol.clone()],
        profiles: vec![name.clone()],
    };
    let dir = format!("/var/lib/stockade/volumes/{vol}");
    fs::create_dir_all(format!("{dir}/sub")).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(format!("{dir}/sub/file"), "kept").unwrap();
    fs::set_permissions(format!("{dir}/sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", format!("{dir}/link")).unwrap();
    let profiles = Profiles::new();
    let p = profiles.write(
        &name,
        &sh_profile(
            "cat /srv/v/sub/file && echo more >> /srv/v/sub/file && echo ok",
            &m,
            &format!("[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"volume\"\nname = \"{vol}\"\ntarget = \"/srv/v\"\n"),
        ),
    );
    let out = Run::profile(&p, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "keptok");
    for path in [dir.clone(), format!("{dir}/sub"), format!("{dir}/sub/file")] {
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.uid() >= ID_BASE,
            "{path} still owned by {}",
            meta.uid()
        );
    }
    assert_eq!(
        fs::symlink_metadata(format!("{dir}/sub/file"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata("/etc/hostname").unwrap().uid(),
        0,
        "followed the symlink"
    );
}

/// One sandbox cannot see, let alone write to, another sandbox's notify relay.
#[test]
fn notify_relays_of_other_sandboxes_are_invisible() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let dir = tempfile::tempdir().unwrap();
    let unit_socket = dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&unit_socket).unwrap();
    let relayed = profiles.write(
        "relayed",
        &sh_profile(
            "exec sleep 30",
            &m,
            "[systemd]\nnotify = true\nmode = \"off\"\n",
        ),
    );
    let snap = Snapshot::take();
    let mut victim = Command::new(stockade_bin())
        .arg("run")
        .arg(&relayed)
        .env("NOTIFY_SOCKET", &unit_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let relay = format!("/run/stockade/notify-{}.sock", victim.id());
    assert!(
        wait_until(std::time::Duration::from_secs(5), || Path::new(&relay)
            .exists()),
        "no relay at {relay}"
    );
    let attacker = profiles.write(
        "attacker",
        &sh_profile(
            &format!("ls /run/stockade >/dev/null 2>&1; echo list=$?; test -e {relay}; echo seen=$?; systemd-notify --status=forged 2>/dev/null; NOTIFY_SOCKET={relay} systemd-notify --status=forged 2>/dev/null; echo sent=$?"),
            &m,
            "[namespaces]\nnet = false\n",
        ),
    );
    let out = Run::profile(&attacker, &m).output();
    let v = probe_values(&out);
    assert_eq!(
        v.get("list").map(String::as_str),
        Some("2"),
        "{v:?} {}",
        text(&out.stderr)
    );
    assert_eq!(v.get("seen").map(String::as_str), Some("1"), "{v:?}");
    assert_ne!(v.get("sent").map(String::as_str), Some("0"), "{v:?}");
    listener.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    while let Ok(n) = listener.recv(&mut buf) {
        let msg = String::from_utf8_lossy(&buf[..n]);
        assert!(
            !msg.contains("forged"),
            "the relay passed on another sandbox's message: {msg}"
        );
    }
    // A clean stop, as a unit's would be: the relay goes with the supervisor.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    victim.wait().unwrap();
    assert!(!Path::new(&relay).exists(), "relay {relay} left behind");
    snap.assert_unchanged(&m);
}

#[test]
fn scratch_space_is_bounded() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let size = |target: &str| {
        format!("awk '$2 == \"{target}\" {{ for (i = 1; i <= NF; i++) if ($i ~ /size=/) print \"{target}=\" $i }}' /proc/self/mounts")
    };
    let script = ["/tmp", "/var/tmp", "/dev/shm", "/run", "/srv"]
        .map(size)
        .join("; ");
    let p = profiles.write(
        "scratch",
        &sh_profile(
            &script,
            &m,
            "[filesystem]\ntmp_size = \"32M\"\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n",
        ),
    );
    let out = Run::profile(&p, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = probe_values(&out);
    for (target, want) in [
        ("/tmp", "size=32768k"),
        ("/var/tmp", "size=32768k"),
        ("/dev/shm", "size=65536k"),
        ("/run", "size=16384k"),
        ("/srv", "size=65536k"),
    ] {
        let opts = v.get(target).map(|o| format!(",{o},")).unwrap_or_default();
        assert!(opts.contains(&format!(",{want},")), "{target}: {v:?}");
    }
}

#[test]
fn address_families_follow_the_profile() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    // python3 makes the calls with exact arguments; the result is the errno name or OK.
    let script = "for f in AF_INET AF_UNIX AF_PACKET AF_VSOCK; do python3 -c \"import socket,sys
try:
    socket.socket(getattr(socket, '$f'), socket.SOCK_DGRAM if '$f' == 'AF_PACKET' else socket.SOCK_STREAM); print('$f=OK')
except OSError as e:
    import errno; print('$f=' + errno.errorcode[e.errno])\"; done";
    let run = |extra: &str| {
        let p = profiles.write("families", &sh_profile(script, &m, extra));
        let out = Run::profile(&p, &m).output();
        assert!(out.status.success(), "{}", text(&out.stderr));
        probe_values(&out)
    };
    let default = run("");
    assert_eq!(
        default.get("AF_INET").map(String::as_str),
        Some("OK"),
        "{default:?}"
    );
    assert_eq!(default.get("AF_UNIX").map(String::as_str), Some("OK"));
    assert_eq!(
        default.get("AF_PACKET").map(String::as_str),
        Some("EAFNOSUPPORT")
    );
    assert_eq!(
        default.get("AF_VSOCK").map(String::as_str),
        Some("EAFNOSUPPORT")
    );
    // Narrowed to local sockets; widened to packet sockets (which then need CAP_NET_RAW).
    let narrow = run("[security]\naddress_families = [\"AF_UNIX\"]\n");
    assert_eq!(
        narrow.get("AF_INET").map(String::as_str),
        Some("EAFNOSUPPORT"),
        "{narrow:?}"
    );
    assert_eq!(narrow.get("AF_UNIX").map(String::as_str), Some("OK"));
    let wide = run("[security]\naddress_families = [\"unix\", \"inet\", \"packet\"]\n");
    assert_eq!(
        wide.get("AF_PACKET").map(String::as_str),
        Some("EPERM"),
        "{wide:?}"
    );
    assert_eq!(
        wide.get("AF_VSOCK").map(String::as_str),
        Some("EAFNOSUPPORT")
    );
}

/// A valid profile that opens a hole in the walls is accepted, and `check` says so.
#[test]
fn check_names_the_holes_a_profile_opens() {
    require_root();
    let profiles = Profiles::new();
    let dir = tempfile::tempdir_in("/run").unwrap();
    let sock = dir.path().join("host.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let p = profiles.write(
        "holes",
        &format!("[exec]\ncommand = [\"/bin/true\"]\n[idmap]\nuid = [{{ inside = 0, outside = 0, count = 1 }}]\ngid = [{{ inside = 0, outside = 0, count = 1 }}]\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"bind\"\nsource = \"{}\"\ntarget = \"/srv/host.sock\"\n", sock.display()),
    );
    let out = Command::new(stockade_bin())
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: ") && err.contains(":4:7: idmap.uid: maps host id 0 (root)"),
        "{err}"
    );
    assert!(err.contains("idmap.gid: maps host id 0"), "{err}");
    assert!(
        err.contains("mount[2].source: binds `") && err.contains("a hole in the default walls"),
        "{err}"
    );
    let clean = profiles.write("clean", "[exec]\ncommand = [\"/bin/true\"]\n");
    let out = Command::new(stockade_bin())
        .arg("check")
        .arg(&clean)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}
