//! `stockade export --format oci|systemd PROFILE [DIR]`: plans the profile for the machine
//! that will run the export (a systemd host with cgroup v2) and writes the translation. Glue
//! only: the translations are `export::oci` and `export::systemd`, pure functions of the
//! plan; this file lists the host's root for the bundle and writes its files.

use super::ExportFormat;
use crate::error::Error;
use crate::export::oci::{self, HostEntry};
use crate::profile::SearchPath;
use std::fs;
use std::path::Path;

pub fn export(
    format: ExportFormat,
    arg: &str,
    dir: Option<&Path>,
    search: &SearchPath,
) -> Result<u8, Error> {
    let inv = crate::export::invocation();
    let cgroup = Some(crate::export::target_cgroup());
    match (format, dir) {
        (ExportFormat::Systemd, Some(d)) => Err(Error::Export(format!(
            "--format systemd prints the unit and takes no DIR (got {}); redirect it into a file",
            d.display()
        ))),
        (ExportFormat::Oci, None) => Err(Error::Export("--format oci needs the bundle DIR".into())),
        (ExportFormat::Systemd, None) => {
            let (plan, _) = super::load_and_plan_for(arg, search, &inv, cgroup)?;
            let unit = crate::export::systemd::unit(&plan);
            // What the unit leaves out is in its comments; said on stderr too, so it is
            // seen when the unit is redirected straight into a file.
            for m in crate::export::systemd::missing(&plan) {
                eprintln!("stockade: export: not in the unit: {m}");
            }
            print!("{unit}");
            Ok(0)
        }
        (ExportFormat::Oci, Some(dir)) => {
            let (plan, _) = super::load_and_plan_for(arg, search, &inv, cgroup)?;
            let b = oci::bundle(&plan, &host_root()?).map_err(|e| Error::Export(e.to_string()))?;
            write_bundle(dir, &b)?;
            for m in &b.missing {
                eprintln!("stockade: export: not in the bundle: {m}");
            }
            for v in &plan.volumes {
                if !v.host_path.exists() {
                    eprintln!(
                        "stockade: export: the bundle binds volume {}, which does not exist yet: make it with `stockade volume create {} --owner {}:{}`",
                        v.host_path.display(),
                        v.host_path.file_name().unwrap_or_default().to_string_lossy(),
                        v.uid,
                        v.gid
                    );
                }
            }
            Ok(0)
        }
    }
}

/// The directories and symlinks of this machine's `/`, sorted by name.
fn host_root() -> Result<Vec<HostEntry>, Error> {
    let err = |e: std::io::Error| Error::Export(format!("cannot list /: {e}"));
    let mut out = Vec::new();
    for entry in fs::read_dir("/").map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(err)?;
        if kind.is_symlink() {
            let text = fs::read_link(entry.path()).map_err(err)?;
            out.push(HostEntry::Symlink(name, text.display().to_string()));
        } else if kind.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            let mode = entry.metadata().map_err(err)?.permissions().mode();
            out.push(HostEntry::Dir(name, mode & 0o001 != 0));
        }
    }
    out.sort_by(|a, b| key(a).cmp(key(b)));
    Ok(out)
}

fn key(e: &HostEntry) -> &str {
    match e {
        HostEntry::Dir(n, _) | HostEntry::Symlink(n, _) => n,
    }
}

/// Writes DIR/config.json and DIR/rootfs; on failure removes what it made.
fn write_bundle(dir: &Path, b: &oci::Bundle) -> Result<(), Error> {
    let made_dir = !dir.exists();
    if !made_dir && fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(Error::Export(format!(
            "{} is not an empty directory; give a new or empty one",
            dir.display()
        )));
    }
    let result = (|| -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let rootfs = dir.join("rootfs");
        fs::create_dir(&rootfs)?;
        for d in &b.rootfs.dirs {
            fs::create_dir(rootfs.join(d))?;
        }
        for (name, text) in &b.rootfs.symlinks {
            std::os::unix::fs::symlink(text, rootfs.join(name))?;
        }
        let json = serde_json::to_string_pretty(&b.config).map_err(std::io::Error::other)?;
        fs::write(dir.join("config.json"), json + "\n")
    })();
    result.map_err(|e| {
        if made_dir {
            let _ = fs::remove_dir_all(dir);
        } else {
            let _ = fs::remove_dir_all(dir.join("rootfs"));
            let _ = fs::remove_file(dir.join("config.json"));
        }
        Error::Export(format!("cannot write the bundle in {}: {e}", dir.display()))
    })
}
