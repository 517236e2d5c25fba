//! `stockade exec [--user USER] [--tty] NAME -- COMMAND...`: finds the running sandbox by
//! name and hands its record to the sandbox stage (`sandbox::join`), which runs the command
//! inside. Glue only.

use super::{instance_by_name, instances};
use crate::error::Error;
use crate::sandbox::join;

pub fn exec(name: &str, command: &[String], user: Option<&str>, tty: bool) -> Result<u8, Error> {
    let running = instances()?;
    let i = instance_by_name(&running, name)?;
    let r = &i.record;
    // Marked by its supervisor when a stop was asked for or the service ended: what is
    // entered now dies with it, mid-command.
    if i.stopping {
        let others: Vec<&str> = running
            .iter()
            .filter(|o| !o.stopping)
            .map(|o| o.name.as_str())
            .collect();
        return Err(Error::Stopping {
            name: name.to_owned(),
            running: if others.is_empty() {
                "none".into()
            } else {
                others.join(", ")
            },
        });
    }
    let target = join::Target {
        name,
        plan: &r.plan,
        init: r.init,
        namespaces: &r.namespaces,
        cgroup: r.cgroup.as_deref(),
    };
    let request = join::Request {
        argv: command,
        user,
        tty,
        term: std::env::var("TERM").ok(),
    };
    join::exec(&target, &request).map_err(|source| Error::Sandbox {
        name: name.to_owned(),
        source,
    })
}
