//! `stockade volume ls|inspect|create|rm`: named volumes, with the running sandboxes that
//! use them. `rm` refuses a volume a running sandbox mounts.

use super::instances;
use super::ps::{size, table};
use crate::error::Error;
use crate::ops::records::Instance;
use crate::ops::volumes;

/// The running sandboxes that mount volume `name`, by their records' plans.
fn users<'a>(running: &'a [Instance], name: &str) -> Vec<&'a Instance> {
    let path = volumes::dir().join(name);
    running
        .iter()
        .filter(|i| i.record.plan.volumes.iter().any(|v| v.host_path == path))
        .collect()
}

fn names(users: &[&Instance]) -> String {
    if users.is_empty() {
        "-".into()
    } else {
        users
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn ls(json: bool) -> Result<u8, Error> {
    let running = instances()?;
    let all = volumes::list(&volumes::dir())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(0);
    }
    let rows: Vec<[String; 4]> = all
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                size(v.size),
                format!("{}:{}", v.uid, v.gid),
                names(&users(&running, &v.name)),
            ]
        })
        .collect();
    table(["NAME", "SIZE", "OWNER", "USED BY"], &rows);
    Ok(0)
}

pub fn inspect(name: &str) -> Result<u8, Error> {
    let running = instances()?;
    let v = volumes::inspect(&volumes::dir(), name)?;
    println!(
        "name: {}\npath: {}\nowner: {}:{} (host ids)\nsize: {} ({} bytes)\nused by: {}",
        v.name,
        v.path.display(),
        v.uid,
        v.gid,
        size(v.size),
        v.size,
        names(&users(&running, name))
    );
    Ok(0)
}

pub fn create(name: &str, owner: Option<(u32, u32)>) -> Result<u8, Error> {
    super::require_root("volume create")?;
    let v = volumes::create(&volumes::dir(), name, owner)?;
    println!("{}", v.path.display());
    Ok(0)
}

pub fn rm(names_: &[String]) -> Result<u8, Error> {
    let running = instances()?;
    for name in names_ {
        let in_use = users(&running, name)
            .first()
            .map(|i| (i.name.clone(), i.record.supervisor.pid));
        volumes::remove(&volumes::dir(), name, in_use)?;
        println!("{name}");
    }
    Ok(0)
}
