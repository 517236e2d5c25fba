//! Talking to systemd: transient scope registration over the system bus, and sd_notify.
//!
//! Used only by the supervisor after the sandbox's last clone: zbus starts threads, and a
//! forked child of a threaded process must not run arbitrary code.

mod bus;

use crate::plan::{Prop, ScopeSpec};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::Duration;
use zbus::zvariant::Value;

/// How long systemd may take to start a scope before stockade gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(15);

/// The supervisor's link to systemd. Holding it keeps the scope's `AddRef` reference; the
/// reference (and so the scope, once empty) goes when this is dropped or the process dies.
pub struct Systemd {
    conn: Option<zbus::blocking::Connection>,
    notify_socket: Option<String>,
}

impl Systemd {
    pub fn new(notify_socket: Option<String>) -> Self {
        Systemd {
            conn: None,
            notify_socket,
        }
    }
}

fn value(p: &Prop) -> Value<'_> {
    match p {
        Prop::U64(v) => Value::U64(*v),
        Prop::Bool(b) => Value::Bool(*b),
        Prop::Str(s) => Value::from(s.as_str()),
        Prop::Bytes(b) => Value::from(b.clone()),
    }
}

/// Turns a D-Bus error into words naming the cause.
fn describe(e: &zbus::Error, unit: &str) -> String {
    if let zbus::Error::MethodError(name, msg, _) = e {
        let msg = msg.as_deref().unwrap_or("");
        return match name.as_str() {
            "org.freedesktop.systemd1.UnitExists" => format!("a unit named {unit} already exists ({msg}); unit_name must be unique per run"),
            "org.freedesktop.DBus.Error.AccessDenied" | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => format!("systemd (polkit) refused to create {unit}: {msg}; run as root or allow org.freedesktop.systemd1.manage-units"),
            "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => format!("systemd is not on the system bus: {msg}"),
            other => format!("{other}: {msg}"),
        };
    }
    e.to_string()
}

impl crate::sandbox::Manager for Systemd {
    fn register_scope(&mut self, spec: &ScopeSpec, init: u32) -> Result<(), String> {
        let conn = zbus::blocking::Connection::system().map_err(|e| format!("cannot connect to the system bus (is systemd running? /run/dbus/system_bus_socket): {e}"))?;
        let manager = bus::ManagerProxy::new(&conn).map_err(|e| describe(&e, &spec.unit))?;
        manager.subscribe().map_err(|e| describe(&e, &spec.unit))?;
        // The match is in place before the call, so the job's end cannot be missed.
        let removed = manager
            .receive_job_removed()
            .map_err(|e| describe(&e, &spec.unit))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for signal in removed {
                if let Ok(args) = signal.args() {
                    if tx
                        .send((args.job().to_string(), args.result().to_string()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        let mut props: Vec<(&str, Value<'_>)> = spec
            .properties
            .iter()
            .map(|(k, v)| (*k, value(v)))
            .collect();
        props.push(("PIDs", Value::from(vec![init])));
        let job = manager
            .start_transient_unit(&spec.unit, "fail", props, Vec::new())
            .map_err(|e| describe(&e, &spec.unit))?;
        let job = job.as_str().to_owned();
        let deadline = std::time::Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((path, result)) if path == job => {
                    if result == "done" {
                        break;
                    }
                    return Err(format!("systemd's job to start {} ended with result `{result}` (see journalctl -u {})", spec.unit, spec.unit));
                }
                Ok(_) => continue,
                Err(_) => {
                    return Err(format!(
                        "systemd did not start {} within {}s",
                        spec.unit,
                        JOB_TIMEOUT.as_secs()
                    ))
                }
            }
        }
        tracing::debug!(unit = %spec.unit, "scope registered");
        self.conn = Some(conn);
        Ok(())
    }

    fn relay_notify(&mut self, message: &str) {
        if let Some(path) = &self.notify_socket {
            if let Err(e) = send_notify(path, message) {
                tracing::warn!("cannot pass `{message}` to systemd at {path}: {e}");
            }
        }
    }
}

/// Sends one sd_notify datagram to `path` (a socket file, or `@name` for an abstract one).
pub fn send_notify(path: &str, message: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        sock.send_to(message.as_bytes(), path)?;
    }
    Ok(())
}
