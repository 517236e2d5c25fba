//! Talking to systemd: transient scope registration over the system bus, and sd_notify.
//!
//! Used only by the supervisor after the sandbox's last clone: zbus starts threads, and a
//! forked child of a threaded process must not run arbitrary code.

mod bus;

use crate::plan::{Prop, ScopeSpec};
use std::os::unix::net::UnixDatagram;
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
fn describe(name: &str, msg: &str, unit: &str) -> String {
    match name {
            "org.freedesktop.systemd1.UnitExists" => format!("a unit named {unit} already exists ({msg}); unit_name must be unique per run"),
            "org.freedesktop.DBus.Error.AccessDenied" | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => format!("systemd (polkit) refused to create {unit}: {msg}; run as root or allow org.freedesktop.systemd1.manage-units"),
            "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => format!("systemd is not on the system bus: {msg}"),
        other => format!("{other}: {msg}"),
    }
}

impl crate::sandbox::Manager for Systemd {
    fn register_scope(&mut self, spec: &ScopeSpec, init: u32) -> Result<(), String> {
        let t0 = std::time::Instant::now();
        let conn = connect()?;
        tracing::trace!(elapsed = ?t0.elapsed(), "bus connected");
        let mut props: Vec<(&str, Value<'_>)> = spec
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), value(v)))
            .collect();
        props.push(("PIDs", Value::from(vec![init])));
        bus::start_transient_unit(&conn, &spec.unit, props, JOB_TIMEOUT).map_err(|f| match f {
            bus::Failure::Call { name, message } => describe(&name, &message, &spec.unit),
            bus::Failure::Job(result) => format!(
                "systemd's job to start {} ended with result `{result}` (see journalctl -u {})",
                spec.unit, spec.unit
            ),
            bus::Failure::Timeout => format!(
                "systemd did not start {} within {}s",
                spec.unit,
                JOB_TIMEOUT.as_secs()
            ),
            bus::Failure::Bus(e) => format!("D-Bus error while starting {}: {e}", spec.unit),
        })?;
        tracing::debug!(unit = %spec.unit, elapsed = ?t0.elapsed(), "scope registered");
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

/// The system bus. (systemd's private socket would skip the bus daemon, but zbus 5 panics
/// on the sender field systemd sets on that peer-to-peer connection.)
fn connect() -> Result<zbus::blocking::Connection, String> {
    zbus::blocking::Connection::system().map_err(|e| format!("cannot connect to the system bus (is systemd running? /run/dbus/system_bus_socket): {e}"))
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
