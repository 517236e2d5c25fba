//! `stockade exec [--user USER] [--tty] NAME -- COMMAND...`: finds the running sandbox by
//! name and hands its record to the sandbox stage (`sandbox::join`), which runs the command
//! inside. Glue only.

use super::{instance_by_name, instances};
use crate::error::Error;
use crate::ops::status;
use crate::sandbox::join;

pub fn exec(name: &str, command: &[String], user: Option<&str>, tty: bool) -> Result<u8, Error> {
    let running = instances()?;
    let i = instance_by_name(&running, name)?;
    let r = &i.record;
    // A sandbox whose service has ended is on its way out: nothing to join.
    if status::service_pid(r.init.pid).is_none() {
        let others: Vec<&str> = running
            .iter()
            .filter(|o| o.name != name && status::service_pid(o.record.init.pid).is_some())
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
