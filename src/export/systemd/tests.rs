//! The unit made of plans built on a fake host: every directive cites its decision, the
//! walls map to systemd's directives, and what systemd cannot express is listed.

use super::{missing, quote, unit};
use crate::plan::tests::for_export;

const REDIS: &str = r#"
[exec]
command = ["/bin/true", "--port", "6379"]
user = "redis"
workdir = "/var/lib/redis"
rlimits = { nofile = 10032, core = 0 }
[namespaces]
net = false
[filesystem]
read_only = true
[[mount]]
type = "bind"
source = "/etc/redis"
target = "/etc/redis"
read_only = true
[[mount]]
type = "volume"
name = "redis-data"
target = "/var/lib/redis"
[resources]
memory_max = "256M"
cpu_quota = "50%"
tasks_max = 32
[systemd]
notify = true
[security]
capabilities = ["net_bind_service"]
syscall_filter = ["@system-service"]
syscall_deny = ["@privileged", "@resources"]
"#;

/// The `[Service]` directives, each with the comment line above it.
fn directives(text: &str) -> Vec<(String, String)> {
    let service = text
        .split("\n[Service]\n")
        .nth(1)
        .expect("a [Service] section");
    let service = service.split("\n[Install]").next().unwrap();
    let lines: Vec<&str> = service.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let comment = if i > 0 { lines[i - 1] } else { "" };
        out.push((comment.to_owned(), (*l).to_owned()));
    }
    out
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn every_directive_cites_the_profile_line_or_default_that_decided_it() {
    let u = unit(&for_export(REDIS));
    let d = directives(&u);
    assert!(d.len() > 30, "{u}");
    for (comment, line) in &d {
        assert!(
            comment.starts_with("# ")
                && (comment.contains(".toml:")
                    || comment.contains("default (")
                    || comment.contains("invocation (")),
            "{line} is not preceded by its provenance: {comment:?}\n{u}"
        );
    }
    let cited = |key: &str| {
        d.iter()
            .find(|(_, l)| l.starts_with(key))
            .map(|(c, _)| c.clone())
            .unwrap()
    };
    assert!(
        cited("User=").contains("exec.user: ") && cited("User=").ends_with("p.toml:4"),
        "{}",
        cited("User=")
    );
    assert!(cited("MemoryMax=").contains("resources.memory_max: "));
    assert!(cited("ProtectSystem=").contains("filesystem.read_only: "));
    assert!(cited("PrivateTmp=").contains("default (filesystem.private_tmp)"));
}

#[test]
fn a_named_user_profile_maps_to_systemds_own_directives() {
    let u = unit(&for_export(REDIS));
    for line in [
        "Type=notify",
        "ExecStart=\"/bin/true\" \"--port\" \"6379\"",
        "WorkingDirectory=/var/lib/redis",
        "User=102",
        "Group=105",
        "PrivateUsers=yes",
        "PrivateNetwork=no",
        "PrivateIPC=yes",
        "ProtectSystem=strict",
        "PrivateDevices=yes",
        "PrivateTmp=yes",
        "BindReadOnlyPaths=/etc/redis",
        "StateDirectory=redis",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "ProtectKernelTunables=yes",
        "ProtectControlGroups=yes",
        "RestrictNamespaces=yes",
        "LimitNOFILE=10032",
        "LimitCORE=0",
        "MemoryMax=256M",
        "CPUQuota=50%",
        "TasksMax=32",
        "Slice=stockade.slice",
    ] {
        assert!(has(&u, line), "missing `{line}` in\n{u}");
    }
    // The allow-list comes first: systemd makes the first assignment decide the kind.
    let allow = u.find("SystemCallFilter=@system-service").unwrap();
    assert!(allow < u.find("SystemCallFilter=~@privileged").unwrap());
    // No DynamicUser: the user keeps its host id, as with stockade's id map.
    assert!(!u.contains("DynamicUser"), "{u}");
    assert!(u.contains("/run/systemd/notify") || !u.contains("TemporaryFileSystem=/run"));
}

#[test]
fn a_root_service_in_an_id_range_becomes_a_dynamic_user_and_the_gaps_are_listed() {
    let p = for_export(
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nhostname = \"web\"\n[security]\nlandlock = { read = [\"/usr\"], exec = [\"/bin\"] }\n",
    );
    let u = unit(&p);
    assert!(has(&u, "DynamicUser=yes"), "{u}");
    assert!(!u.lines().any(|l| l.starts_with("User=")), "{u}");
    assert!(
        has(&u, "Type=exec") && has(&u, "PrivateNetwork=yes") && has(&u, "ProtectProc=invisible")
    );
    // The baseline deny-list, with the default's provenance.
    assert!(u.contains("SystemCallFilter=~@clock @module"), "{u}");
    assert!(has(&u, "KeyringMode=private") && has(&u, "CapabilityBoundingSet="));
    let m = missing(&p).join("\n");
    for what in [
        "landlock: read only below /usr",
        "landlock: execute only below /bin",
        "the hostname `web`",
        "the id map (0 ",
        "a PID namespace",
    ] {
        assert!(m.contains(what), "`{what}` not listed as missing:\n{m}");
    }
    // The same list heads the unit, as comments.
    assert!(u.contains("# What systemd cannot express for this profile"));
    assert!(u.contains("#   - landlock: read only below /usr"));
}

#[test]
fn command_words_are_quoted_for_systemd() {
    // `$` would be a variable and `%` a specifier; newlines and quotes are C escapes.
    assert_eq!(
        quote("echo \"$$\" 100%\n", true),
        r#""echo \"$$$$\" 100%%\n""#
    );
    assert_eq!(quote("A=$x", false), r#""A=$x""#);
    assert_eq!(quote("a\\b", true), r#""a\\b""#);
}

#[test]
fn a_bridge_network_is_named_among_what_systemd_cannot_express() {
    let plan = for_export(
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\npublish = [\"8080:80\"]\n",
    );
    let m = missing(&plan).join("\n");
    assert!(m.contains("the bridge network `default`"), "{m}");
    assert!(m.contains("8080:80/tcp"), "{m}");
}
