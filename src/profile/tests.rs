//! Parsing, merging and validation, without root and without touching the host.

use super::*;
use std::fs;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let d = Dir(tempfile::tempdir().unwrap());
        for (name, text) in files {
            d.write(name, text);
        }
        d
    }
    fn write(&self, name: &str, text: &str) {
        let p = self.0.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
    fn search(&self) -> SearchPath {
        SearchPath {
            dirs: vec![self.0.path().to_owned()],
            trusted_owners: None,
        }
    }
    fn load(&self, arg: &str) -> Result<Loaded, Box<Invalid>> {
        load(arg, &self.search())
    }
    /// The rendered problems of a profile that must fail.
    fn problems(&self, arg: &str) -> Vec<String> {
        match self.load(arg) {
            Ok(_) => panic!("{arg} should be invalid"),
            Err(inv) => inv.lines(),
        }
    }
}

const MIN: &str = "[exec]\ncommand = [\"/bin/true\"]\n";

fn one_problem(d: &Dir, arg: &str) -> String {
    let p = d.problems(arg);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    p.into_iter().next().unwrap()
}

#[test]
fn every_key_parses_and_validates() {
    let text = include_str!("../../tests/fixtures/every-key.toml");
    let d = Dir::new(&[("every.toml", text)]);
    let l = d
        .load("every")
        .unwrap_or_else(|e| panic!("{:#?}", e.lines()));
    assert_eq!(l.name, "every");
    assert_eq!(l.profile.mount.len(), 4);
    assert_eq!(
        l.profile.exec.rlimits["nproc"].value,
        values::Limit::Infinity
    );
    assert_eq!(
        l.profile.mount[2].size.as_ref().unwrap().value,
        values::Size::Bytes(16 << 20)
    );
    // The fixture sets every key of the schema, so a new key cannot go untested.
    for key in schema::all_key_paths() {
        let last = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{last} =")),
            "tests/fixtures/every-key.toml does not set `{key}`"
        );
    }
}

#[test]
fn every_key_is_documented_in_the_man_page() {
    let man = include_str!("../../man/stockade.toml.5");
    for key in schema::all_key_paths() {
        let last = key.rsplit('.').next().unwrap();
        assert!(
            man.contains(&format!("\\fB{last}\\fR")),
            "man/stockade.toml.5 does not document `{key}`"
        );
    }
}

#[test]
fn examples_parse_and_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let search = SearchPath {
                dirs: vec![dir.into()],
                trusted_owners: None,
            };
            load(p.to_str().unwrap(), &search)
                .unwrap_or_else(|e| panic!("{}: {:#?}", p.display(), e.lines()));
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} example profiles");
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let d = Dir::new(&[("bad.toml", "[exec]\ncommand = [\"/bin/true\"\n")]);
    let p = one_problem(&d, "bad");
    assert!(p.starts_with(&format!("{}:2:", d.path("bad.toml"))), "{p}");
}

#[test]
fn unknown_keys_are_all_reported_with_position_and_suggestion() {
    let d = Dir::new(&[(
        "typo.toml",
        "[exec]\ncomand = [\"/bin/true\"]\nusr = \"x\"\n[namespace]\nnet = true\n",
    )]);
    let p = d.problems("typo");
    let file = d.path("typo.toml");
    assert!(
        p.contains(&format!(
            "{file}:2:1: exec.comand: unknown key in [exec] (did you mean `command`?)"
        )),
        "{p:#?}"
    );
    assert!(
        p.contains(&format!(
            "{file}:3:1: exec.usr: unknown key in [exec] (did you mean `user`?)"
        )),
        "{p:#?}"
    );
    assert!(
        p.contains(&format!(
            "{file}:4:2: namespace: unknown key at the top level (did you mean `namespaces`?)"
        )),
        "{p:#?}"
    );
}

#[test]
fn unknown_keys_inside_mounts_and_inline_tables_are_found() {
    let d = Dir::new(&[(
        "m.toml",
        &format!("{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/x\"\nsise = \"1M\"\n[security]\nlandlock = {{ raed = [] }}\n"),
    )]);
    let p = d.problems("m");
    assert!(
        p.iter()
            .any(|l| l.contains("mount[1].sise: unknown key in [mount[1]] (did you mean `size`?)")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("security.landlock.raed: unknown key") && l.contains("`read`")),
        "{p:#?}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let d = Dir::new(&[("t.toml", &format!("{MIN}[namespaces]\nnet = \"yes\"\n"))]);
    let p = one_problem(&d, "t");
    assert!(p.contains(":4:7: namespaces.net: invalid type"), "{p}");
}

#[test]
fn bad_size_is_refused_with_the_syntax() {
    let d = Dir::new(&[(
        "s.toml",
        &format!("{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/x\"\nsize = \"12Q\"\n"),
    )]);
    let p = one_problem(&d, "s");
    assert!(p.contains(":6:8: mount[1].size: invalid size `12Q`"), "{p}");
    // The message lists every suffix the parser accepts, P included.
    assert!(p.contains("K, M, G, T or P suffix"), "{p}");
    assert_eq!(
        crate::profile::values::Size::parse("2P"),
        Ok(crate::profile::values::Size::Bytes(2 << 50))
    );
    assert_eq!(
        crate::profile::values::Size::Bytes(2 << 50).to_string(),
        "2P"
    );
}

#[test]
fn relative_command_is_refused() {
    let d = Dir::new(&[("r.toml", "[exec]\ncommand = [\"redis-server\"]\n")]);
    let p = one_problem(&d, "r");
    assert!(
        p.contains(":2:11: exec.command: the program must be an absolute path"),
        "{p}"
    );
}

#[test]
fn missing_command_names_the_file() {
    let d = Dir::new(&[("e.toml", "description = \"x\"\n")]);
    let p = one_problem(&d, "e");
    assert!(
        p.starts_with(&format!("{}: exec.command: missing", d.path("e.toml"))),
        "{p}"
    );
}

#[test]
fn mount_target_escaping_the_root_is_refused() {
    let d = Dir::new(&[(
        "m.toml",
        &format!("{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/var/../../etc\"\n"),
    )]);
    let p = one_problem(&d, "m");
    assert!(
        p.contains("mount[1].target: `/var/../../etc` resolves outside the sandbox root"),
        "{p}"
    );
}

#[test]
fn mount_keys_are_checked_per_type() {
    let d = Dir::new(&[(
        "m.toml",
        &format!("{MIN}[[mount]]\ntype = \"bind\"\ntarget = \"/x\"\nsize = \"1M\"\n"),
    )]);
    let p = d.problems("m");
    assert!(
        p.iter()
            .any(|l| l.contains("mount[1].source: missing: a bind mount needs `source`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains(":6:8: mount[1].size: does not apply to a bind mount")),
        "{p:#?}"
    );
}

#[test]
fn idmap_without_user_namespace_is_refused() {
    let d = Dir::new(&[(
        "i.toml",
        &format!("{MIN}[namespaces]\nuser = false\n[idmap]\nuid = [{{ inside = 0, outside = 1000, count = 1 }}]\n"),
    )]);
    let p = one_problem(&d, "i");
    assert!(
        p.contains("idmap.uid: an idmap needs a user namespace"),
        "{p}"
    );
}

#[test]
fn overlapping_idmap_ranges_are_refused() {
    let d = Dir::new(&[(
        "o.toml",
        &format!("{MIN}[idmap]\nuid = [{{ inside = 0, outside = 100000, count = 1000 }}, {{ inside = 500, outside = 300000, count = 10 }}]\n"),
    )]);
    let p = one_problem(&d, "o");
    assert!(
        p.contains("idmap.uid: ranges overlap inside the sandbox: 0..1000 and 500..510"),
        "{p}"
    );
}

#[test]
fn hostname_needs_uts() {
    let d = Dir::new(&[(
        "h.toml",
        &format!("{MIN}[namespaces]\nuts = false\n[network]\nhostname = \"x\"\n"),
    )]);
    assert!(
        one_problem(&d, "h").contains("network.hostname: setting a hostname needs `uts = true`")
    );
}

#[test]
fn invalid_hostnames_are_refused_at_their_key() {
    let long = "a".repeat(65);
    for (name, why) in [
        ("..", "it has an empty label"),
        ("", "it is empty"),
        (
            long.as_str(),
            "it has 65 characters, more than the kernel's 64",
        ),
        (
            "my_svc",
            "`_` is not allowed; use letters, digits, `-` and `.`",
        ),
        ("-web", "the label `-web` starts or ends with `-`"),
        ("web-", "the label `web-` starts or ends with `-`"),
        ("a.-b.c", "the label `-b` starts or ends with `-`"),
        ("a..b", "it has an empty label"),
        ("a.", "it has an empty label"),
        (".a", "it has an empty label"),
    ] {
        let d = Dir::new(&[(
            "h.toml",
            &format!("{MIN}[network]\nhostname = \"{name}\"\n"),
        )]);
        let p = one_problem(&d, "h");
        assert!(
            p.contains(&format!(
                "h.toml:4:12: network.hostname: `{name}` is not a valid hostname: {why}"
            )),
            "{name}: {p}"
        );
    }
    for ok in ["web", "web-1.example.org", "A1", &"a".repeat(64)] {
        let d = Dir::new(&[("h.toml", &format!("{MIN}[network]\nhostname = \"{ok}\"\n"))]);
        d.load("h")
            .unwrap_or_else(|e| panic!("{ok}: {:#?}", e.lines()));
    }
}

#[test]
fn nofile_cannot_be_infinity() {
    let d = Dir::new(&[(
        "n.toml",
        &format!("{MIN}rlimits = {{ nofile = \"infinity\", nproc = \"infinity\" }}\n"),
    )]);
    assert!(
        one_problem(&d, "n").contains("n.toml:3:22: exec.rlimits.nofile: cannot be infinity: the kernel caps open files at fs.nr_open"),
        "{:#?}",
        d.problems("n")
    );
}

#[test]
fn rlimit_names_are_one_table_of_distinct_resources() {
    use crate::profile::validate::{rlimit, RLIMITS};
    for (name, res) in RLIMITS {
        assert_eq!(rlimit(name), Some(res));
        assert_eq!(
            format!("{res:?}"),
            format!("RLIMIT_{}", name.to_uppercase())
        );
    }
    assert_eq!(rlimit("nofiles"), None);
}

#[test]
fn unknown_capability_and_rlimit_get_suggestions() {
    let d = Dir::new(&[(
        "c.toml",
        "[exec]\ncommand = [\"/bin/true\"]\nrlimits = { nofiles = 5 }\n[security]\ncapabilities = [\"net_bind_servce\"]\n",
    )]);
    let p = d.problems("c");
    assert!(
        p.iter()
            .any(|l| l
                .contains("exec.rlimits.nofiles: unknown resource limit (did you mean `nofile`?)")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|l| l
            .contains("unknown capability `net_bind_servce` (did you mean `net_bind_service`?)")),
        "{p:#?}"
    );
}

#[test]
fn landlock_must_allow_executing_the_command() {
    let d = Dir::new(&[(
        "l.toml",
        "[exec]\ncommand = [\"/bin/true\"]\n[security]\nlandlock = { exec = [\"/usr/sbin\"] }\n",
    )]);
    assert!(one_problem(&d, "l")
        .contains("security.landlock.exec: landlock would forbid executing the service itself"));
}

#[test]
fn include_cycle_is_reported() {
    let d = Dir::new(&[
        (
            "a.toml",
            "include = [\"b\"]\n[exec]\ncommand = [\"/bin/true\"]\n",
        ),
        ("b.toml", "include = [\"a.toml\"]\n"),
    ]);
    let p = one_problem(&d, "a");
    assert!(p.contains("include: include cycle:"), "{p}");
    assert!(p.contains("a.toml -> ") && p.contains("b.toml -> "), "{p}");
}

#[test]
fn profile_not_found_lists_where_it_looked() {
    let d = Dir::new(&[]);
    let search = SearchPath::new(&[d.0.path().to_owned()], None);
    let p = load("nosuch", &search).unwrap_err().lines().join("\n");
    assert!(p.contains("profile `nosuch` not found"), "{p}");
    assert!(p.contains(&d.path("nosuch.toml")), "{p}");
    assert!(p.contains("/etc/stockade/profiles/nosuch.toml"), "{p}");
}

#[test]
fn includes_merge_values_maps_and_append_mounts() {
    let d = Dir::new(&[
        (
            "base.toml",
            "[exec]\ncommand = [\"/bin/false\"]\nenv = { A = \"1\", B = \"1\" }\n[filesystem]\nread_only = false\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/a\"\n",
        ),
        (
            "svc.toml",
            "include = [\"base\"]\n[exec]\ncommand = [\"/bin/true\"]\nenv = { B = \"2\" }\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/b\"\n",
        ),
    ]);
    let l = d.load("svc").unwrap();
    let p = &l.profile;
    assert_eq!(p.exec.command.as_ref().unwrap().value, ["/bin/true"]);
    assert_eq!(p.exec.env["A"].value, "1");
    assert_eq!(p.exec.env["B"].value, "2");
    assert!(!p.filesystem.read_only.as_ref().unwrap().value);
    let targets: Vec<&str> = p
        .mount
        .iter()
        .map(|m| m.target.as_ref().unwrap().value.as_str())
        .collect();
    assert_eq!(targets, ["/a", "/b"]);
    // Each value remembers its file.
    let origin = p.filesystem.read_only.as_ref().unwrap().origin;
    assert_eq!(
        l.sources.locate(origin).path,
        std::path::Path::new(&d.path("base.toml"))
    );
}

#[test]
fn dropins_apply_in_name_order_and_mask_across_directories() {
    let vendor = Dir::new(&[
        ("svc.toml", &format!("description = \"vendor\"\n{MIN}")),
        ("svc.toml.d/10-a.toml", "description = \"vendor-10\"\n"),
        ("svc.toml.d/20-b.toml", "[network]\nhostname = \"vendor\"\n"),
    ]);
    let admin = Dir::new(&[
        ("svc.toml.d/20-b.toml", "[network]\nhostname = \"admin\"\n"),
        ("svc.toml.d/30-c.toml", "description = \"admin-30\"\n"),
    ]);
    let search = SearchPath {
        dirs: vec![admin.0.path().to_owned(), vendor.0.path().to_owned()],
        trusted_owners: None,
    };
    let l = load("svc", &search).unwrap();
    assert_eq!(l.profile.description.as_ref().unwrap().value, "admin-30");
    assert_eq!(l.profile.network.hostname.as_ref().unwrap().value, "admin");
}

#[test]
fn errors_in_several_files_are_all_reported() {
    let d = Dir::new(&[
        ("base.toml", "[exec]\nbogus = 1\n"),
        (
            "svc.toml",
            "include = [\"base\"]\n[exec]\ncommand = [\"/bin/true\"]\nalso_bogus = 1\n",
        ),
    ]);
    let p = d.problems("svc");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn show_annotates_every_value_with_its_file() {
    let d = Dir::new(&[
        ("base.toml", "[exec]\ncommand = [\"/bin/false\"]\n"),
        ("svc.toml", "include = [\"base\"]\n[exec]\nuser = \"redis\"\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/run\"\nsize = \"16M\"\n"),
    ]);
    let l = d.load("svc").unwrap();
    let mut r = schema::Render {
        map: &l.sources,
        out: String::new(),
    };
    l.profile.render("", &mut r);
    let base = d.path("base.toml");
    let svc = d.path("svc.toml");
    assert!(
        r.out
            .contains(&format!("command = [\"/bin/false\"]  # {base}:2")),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(&format!("user = \"redis\"  # {svc}:3")),
        "{}",
        r.out
    );
    assert!(r.out.contains("[[mount]]\ntype = \"tmpfs\""), "{}", r.out);
    assert!(
        r.out.contains(&format!("size = \"16M\"  # {svc}:7")),
        "{}",
        r.out
    );
    // The rendering is itself a valid profile.
    d.write("again.toml", &r.out);
    d.load("again").unwrap();
}

/// Why the schema stays flat: serde's untagged enums buffer values and lose toml's spans,
/// so a value inside one could not say where it was written.
#[test]
fn untagged_enums_lose_spans() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Either {
        Num(toml::Spanned<u32>),
        Text(toml::Spanned<String>),
    }
    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        #[allow(dead_code)]
        v: Either,
    }
    let flat: Result<toml::Spanned<u32>, _> =
        toml::from_str::<std::collections::BTreeMap<String, toml::Spanned<u32>>>("v = 5")
            .map(|m| m["v"].clone());
    assert_eq!(flat.unwrap().span(), 4..5);
    let untagged = toml::from_str::<Doc>("v = 5");
    assert!(
        untagged.is_err(),
        "spans survived an untagged enum: {untagged:?}"
    );
}

#[test]
fn resources_and_systemd_keys_are_checked() {
    let d = Dir::new(&[(
        "r.toml",
        &format!("{MIN}[resources]\ncpu_weight = 0\ncpu_quota = \"50\"\n"),
    )]);
    assert!(one_problem(&d, "r").contains("resources.cpu_quota: invalid percentage `50`"));
    let d = Dir::new(&[(
        "r.toml",
        &format!("{MIN}[resources]\ncpu_weight = 0\nallowed_cpus = \"3-1\"\n[systemd]\nunit_name = \"fixed.scope\"\nslice = \"x\"\n"),
    )]);
    let p = d.problems("r");
    assert!(
        p.iter()
            .any(|l| l.contains("resources.cpu_weight: 0 is out of range")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("resources.allowed_cpus: invalid CPU list `3-1`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("systemd.unit_name: must contain `{id}`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("systemd.slice: `x` is not a slice name")),
        "{p:#?}"
    );
    let d = Dir::new(&[(
        "o.toml",
        &format!("{MIN}[resources]\nmemory_max = \"1G\"\n[systemd]\nmode = \"off\"\n"),
    )]);
    assert!(one_problem(&d, "o").contains("systemd.mode: `off` does no cgroup handling, so [resources] cannot be enforced (set: memory_max)"));
}

#[test]
fn untrusted_profile_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new(&[("svc.toml", "[exec]\ncommand = [\"/bin/true\"]\n")]);
    let me = nix::unistd::geteuid().as_raw();
    let file = d.0.path().join("svc.toml");
    let strict = |owners: Vec<u32>| SearchPath {
        dirs: vec![d.0.path().to_owned()],
        trusted_owners: Some(owners),
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(load("svc", &strict(vec![me])).is_ok());
    let msg = load("svc", &strict(vec![me + 1]))
        .unwrap_err()
        .lines()
        .join("\n");
    assert!(
        msg.contains("svc.toml") && msg.contains(&format!("owned by uid {me}")),
        "{msg}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let msg = load("svc", &strict(vec![me]))
        .unwrap_err()
        .lines()
        .join("\n");
    assert!(
        msg.contains("mode 0664") && msg.contains("chmod go-w"),
        "{msg}"
    );
    // The directory decides who can replace the file.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(d.0.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let msg = load("svc", &strict(vec![me]))
        .unwrap_err()
        .lines()
        .join("\n");
    assert!(msg.contains("its directory"), "{msg}");
    std::fs::set_permissions(d.0.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(load("svc", &strict(vec![me])).is_ok());
}

/// `stockade show` prints a merged profile; that text must load again to the same profile.
#[test]
fn shown_profiles_load_back_unchanged() {
    let render = |l: &Loaded| {
        let mut r = schema::Render {
            map: &l.sources,
            out: String::new(),
        };
        l.profile.render("", &mut r);
        // Without the `# file:line` comments, which name different files each time.
        r.out
            .lines()
            .map(|line| line.split("  # /").next().unwrap_or(line).to_owned() + "\n")
            .collect::<String>()
    };
    let every = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/every-key.toml"
    ))
    .unwrap();
    let over =
        "[security]\nsyscall_deny = [\"@clock\"]\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n";
    let first = load_texts(&[
        (PathBuf::from("/p/every-key.toml"), every),
        (PathBuf::from("/p/every-key.toml.d/over.toml"), over.into()),
    ])
    .unwrap_or_else(|e| panic!("{:#?}", e.lines()));
    let shown = render(&first);
    let again = load_texts(&[(PathBuf::from("/p/shown.toml"), shown.clone())])
        .unwrap_or_else(|e| panic!("{:#?}\n{shown}", e.lines()));
    assert_eq!(render(&again), shown);
}

/// Runs `f` in a thread and fails if it has not returned in 20 seconds, so a reader that
/// blocks (on a FIFO) fails the test instead of hanging it.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("loading did not finish: blocked on a special file?")
        }
        Err(e) => panic!("the loading thread failed (see its panic above): {e}"),
    }
}

fn problems_of(arg: String, search: SearchPath) -> Vec<String> {
    within_seconds(move || match load(&arg, &search) {
        Ok(_) => panic!("{arg} should be invalid"),
        Err(inv) => inv.lines(),
    })
}

#[test]
fn a_fifo_drop_in_is_refused_without_blocking() {
    let d = Dir::new(&[("svc.toml", MIN)]);
    fs::create_dir(d.0.path().join("svc.toml.d")).unwrap();
    let fifo = d.0.path().join("svc.toml.d/x.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let p = problems_of("svc".into(), d.search());
    assert_eq!(
        p,
        [format!(
            "{0}: refusing {0}: it is a FIFO; profiles, includes and drop-ins must be regular files",
            fifo.display()
        )]
    );
}

#[test]
fn directories_sockets_and_devices_are_refused() {
    let d = Dir::new(&[(
        "svc.toml",
        &format!("include = [\"null.toml\", \"sock.toml\"]\n{MIN}"),
    )]);
    fs::create_dir_all(d.0.path().join("svc.toml.d/dir.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/null", d.0.path().join("null.toml")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(d.0.path().join("sock.toml")).unwrap();
    let p = problems_of("svc".into(), d.search());
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with(&format!("{}:1:12: refusing ", d.path("svc.toml")))
            && p[0].contains("null.toml: it is a character device"),
        "{p:#?}"
    );
    assert!(p[1].contains("sock.toml: it is a socket"), "{p:#?}");
    assert!(p[2].contains("dir.toml: it is a directory"), "{p:#?}");
}

/// A special file on the search path is reported, not skipped for a profile further down.
#[test]
fn a_special_file_masks_the_search_path_and_is_reported() {
    let admin = Dir::new(&[]);
    let vendor = Dir::new(&[("svc.toml", MIN)]);
    let fifo = admin.0.path().join("svc.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let search = SearchPath {
        dirs: vec![admin.0.path().to_owned(), vendor.0.path().to_owned()],
        trusted_owners: None,
    };
    assert_eq!(search.all_names(), ["svc"]);
    let p = problems_of("svc".into(), search);
    assert!(
        p.len() == 1 && p[0].contains(&format!("refusing {}: it is a FIFO", fifo.display())),
        "{p:#?}"
    );
}

/// Level i is included by both files of level i-1: without reading each file once, the
/// 2^depth paths through the diamonds would each read the last level.
#[test]
fn an_include_reached_twice_is_read_once_at_its_first_place() {
    let depth = 12;
    let mut files = vec![(
        "svc.toml".to_owned(),
        format!("include = [\"b0\", \"c0\"]\n{MIN}"),
    )];
    for i in 0..depth {
        let next = if i + 1 < depth {
            format!("include = [\"b{0}\", \"c{0}\"]\n", i + 1)
        } else {
            "include = [\"d\"]\n".to_owned()
        };
        files.push((
            format!("b{i}.toml"),
            format!("{next}description = \"b{i}\"\n"),
        ));
        files.push((format!("c{i}.toml"), next));
    }
    files.push(("d.toml".to_owned(), "description = \"d\"\n".to_owned()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let d = Dir::new(&files);
    let l = d.load("svc").unwrap_or_else(|e| panic!("{:#?}", e.lines()));
    assert_eq!(l.sources.files().count(), 2 * depth + 2);
    // Each file is merged where it was first reached, so b0's value, merged after all it
    // includes, stands: reading c0's includes again would bring b1's value back.
    assert_eq!(l.profile.description.as_ref().unwrap().value, "b0");
    let d = Dir::new(&[
        ("svc.toml", &format!("include = [\"b\", \"c\"]\n{MIN}")),
        ("b.toml", "include = [\"d\"]\ndescription = \"b\"\n"),
        ("c.toml", "include = [\"d\"]\n"),
        ("d.toml", "description = \"d\"\n"),
    ]);
    let l = d.load("svc").unwrap();
    assert_eq!(l.profile.description.as_ref().unwrap().value, "b");
}

#[test]
fn files_and_profiles_have_size_limits() {
    let big = format!("{MIN}# {}\n", "x".repeat(MAX_FILE_BYTES as usize));
    let d = Dir::new(&[("big.toml", &big)]);
    assert_eq!(
        one_problem(&d, "big"),
        format!("{0}: refusing {0}: larger than 1 MiB", d.path("big.toml"))
    );
    // Four includes just under the per-file limit pass it, but not with the profile.
    let part = format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize - 10));
    let d = Dir::new(&[
        (
            "svc.toml",
            &format!("include = [\"p1\", \"p2\", \"p3\", \"p4\"]\n{MIN}"),
        ),
        ("p1.toml", &part),
        ("p2.toml", &part),
        ("p3.toml", &part),
        ("p4.toml", &part),
    ]);
    let p = one_problem(&d, "svc");
    assert!(
        p.starts_with(&format!("{}:1:", d.path("svc.toml")))
            && p.contains(&format!("refusing {}: ", d.path("p4.toml")))
            && p.contains("exceed 4 MiB together"),
        "{p}"
    );
}

/// Every problem is found, but only the first hundred are printed: a file of 200 000
/// unknown keys gives 100 lines and a count, and (with positions found by binary search,
/// not by scanning the text for each) takes about as long as parsing it.
#[test]
fn problems_are_capped_at_a_hundred_and_counted() {
    let n = 200_000;
    let mut text = String::from(MIN);
    for i in 0..n {
        text.push_str(&format!("unknown_{i} = 1\n"));
    }
    let inv = load_texts(&[(PathBuf::from("/big.toml"), text)]).unwrap_err();
    let lines = inv.lines();
    assert_eq!(lines.len(), problem::SHOWN + 1);
    assert_eq!(
        lines[problem::SHOWN - 1],
        "/big.toml:102:1: exec.unknown_99: unknown key in [exec]"
    );
    assert_eq!(
        lines[problem::SHOWN],
        format!("and {} more problems", n - 100)
    );
}

#[test]
fn an_absolute_include_is_refused_at_its_entry() {
    let d = Dir::new(&[
        ("base.toml", ""),
        (
            "svc.toml",
            &format!("include = [\"base\",\n  \"/etc/passwd\"]\n{MIN}"),
        ),
    ]);
    assert_eq!(
        one_problem(&d, "svc"),
        format!("{}:2:3: include: `/etc/passwd` is an absolute path; an include is a profile name on the search path or a path relative to this file", d.path("svc.toml"))
    );
}

#[test]
fn control_characters_from_the_input_are_escaped() {
    let d = Dir::new(&[(
        "svc.toml",
        &format!("{MIN}\"\\u001b]0;owned\\u0007\\u001b[2J\\nx\" = 1\n"),
    )]);
    let p = one_problem(&d, "svc");
    assert!(
        p.ends_with(":3:1: exec.\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\nx: unknown key in [exec]"),
        "{p}"
    );
}

#[test]
fn a_duplicate_key_is_named_with_its_table() {
    let d = Dir::new(&[(
        "svc.toml",
        "[exec]\ncommand = [\"/bin/true\"]\nuser = \"a\"\nuser = \"b\"\n",
    )]);
    assert_eq!(
        one_problem(&d, "svc"),
        format!(
            "{}:4:1: duplicate key `user` in table [exec]",
            d.path("svc.toml")
        )
    );
    let d = Dir::new(&[("svc.toml", &format!("{MIN}[network]\n[exec]\n"))]);
    assert!(one_problem(&d, "svc").ends_with(":4:2: table [exec] is defined twice"));
}

#[test]
fn a_drop_in_including_its_own_profile_is_a_cycle() {
    let d = Dir::new(&[
        ("svc.toml", MIN),
        ("svc.toml.d/10-x.toml", "include = [\"svc\"]\n"),
    ]);
    let p = one_problem(&d, "svc");
    assert!(
        p.contains("include: include cycle: ")
            && p.contains(&format!(
                "svc.toml -> {}",
                fs::canonicalize(d.path("svc.toml.d/10-x.toml"))
                    .unwrap()
                    .display()
            )),
        "{p}"
    );
}

#[test]
fn an_unknown_nested_header_is_reported_at_its_line() {
    let d = Dir::new(&[(
        "svc.toml",
        &format!("{MIN}\n# a comment\n\n[a.b.c.d.e]\nx = 1\n[exec.q.r.s]\n"),
    )]);
    let p = d.problems("svc");
    assert_eq!(
        p,
        [
            format!("{}:8:7: exec.q: unknown key in [exec]", d.path("svc.toml")),
            format!(
                "{}:6:2: a: unknown key at the top level",
                d.path("svc.toml")
            ),
        ]
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let d = Dir::new(&[]);
    fs::write(
        d.0.path().join("svc.toml"),
        b"[exec]\ncommand = [\"/bin/true\"]\ndescription = \"caf\xe9\"\n",
    )
    .unwrap();
    assert_eq!(
        one_problem(&d, "svc"),
        format!(
            "{}:3:19: invalid UTF-8 (byte 0xe9): a profile is UTF-8 text",
            d.path("svc.toml")
        )
    );
}
