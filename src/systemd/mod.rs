//! Talking to systemd: transient scope registration, and sd_notify.
//!
//! The scope is registered over systemd's private socket when this process may use it
//! (root), as `systemd-run` does, and over the system bus otherwise. Used only by the
//! supervisor after the sandbox's last clone: zbus starts threads, and a forked child of a
//! threaded process must not run arbitrary code.

mod bus;
mod direct;

use crate::plan::{Prop, ScopeSpec};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use zbus::zvariant::Value;

/// How long systemd may take to start a scope before stockade gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(15);

/// The supervisor's link to systemd.
pub struct Systemd {
    /// The system bus connection the scope was registered on, when the private socket was
    /// not usable; kept as before the direct path existed. A direct connection is closed
    /// once the job is done: systemd sends every signal of every unit to each subscribed
    /// direct client, and one that never reads would make PID 1 queue them for the
    /// sandbox's whole life. The scope holds no reference to either (no AddRef).
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

/// Why systemd did not give the sandbox its scope.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to the system bus (is systemd running? /run/dbus/system_bus_socket): {0}"
    )]
    Connect(#[source] Box<zbus::Error>),
    #[error("a unit named {unit} already exists ({message}); unit_name must be unique per run")]
    UnitExists { unit: String, message: String },
    #[error("systemd (polkit) refused to create {unit}: {message}; run as root or allow org.freedesktop.systemd1.manage-units")]
    Refused { unit: String, message: String },
    #[error("systemd is not on the system bus: {message}")]
    NotOnBus { message: String },
    /// Any other D-Bus error reply, by its name.
    #[error("{name}: {message}")]
    Call { name: String, message: String },
    #[error(
        "systemd's job to start {unit} ended with result `{result}` (see journalctl -u {unit})"
    )]
    Job { unit: String, result: String },
    #[error("systemd did not start {unit} within {secs}s")]
    Timeout { unit: String, secs: u64 },
    #[error(
        "error on systemd's private socket {} while starting {unit}: {message}",
        direct::SOCKET
    )]
    Socket { unit: String, message: String },
    #[error("D-Bus error while starting {unit}: {source}")]
    Bus {
        unit: String,
        // Boxed: zbus's error is large, and this one travels up through every caller.
        #[source]
        source: Box<zbus::Error>,
    },
}

impl Error {
    /// The error for a failed start of `unit`, with the D-Bus error names that have a known
    /// cause told apart.
    fn starting(unit: &str, f: bus::Failure) -> Self {
        let unit = unit.to_owned();
        match f {
            bus::Failure::Call { name, message } => match name.as_str() {
                "org.freedesktop.systemd1.UnitExists" => Error::UnitExists { unit, message },
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
                    Error::Refused { unit, message }
                }
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => Error::NotOnBus { message },
                _ => Error::Call { name, message },
            },
            bus::Failure::Job(result) => Error::Job { unit, result },
            bus::Failure::Timeout => Error::Timeout {
                unit,
                secs: JOB_TIMEOUT.as_secs(),
            },
            bus::Failure::Bus(source) => Error::Bus {
                unit,
                source: Box::new(source),
            },
            bus::Failure::Socket(message) => Error::Socket { unit, message },
        }
    }
}

impl crate::sandbox::Manager for Systemd {
    fn register_scope(
        &mut self,
        spec: &ScopeSpec,
        init: u32,
    ) -> Result<(), crate::sandbox::ManagerError> {
        let t0 = std::time::Instant::now();
        let props = || {
            let mut props: Vec<(&str, Value<'_>)> = spec
                .properties
                .iter()
                .map(|(k, v)| (k.as_str(), value(v)))
                .collect();
            props.push(("PIDs", Value::from(vec![init])));
            props
        };
        // Only a refusal before the call is read falls back to the bus: once systemd took
        // it, it may have acted on it, and its answer (or silence) is the outcome.
        let unusable = match direct::Direct::connect(direct::SOCKET) {
            Ok(mut d) => match d.start_transient_unit(&spec.unit, props(), JOB_TIMEOUT) {
                direct::Outcome::Done(done) => {
                    done.map_err(|f| Error::starting(&spec.unit, f))?;
                    tracing::debug!(unit = %spec.unit, elapsed = ?t0.elapsed(), via = %direct::SOCKET, "scope registered over systemd's private socket");
                    // Closed here (see `Systemd::conn`).
                    drop(d);
                    return Ok(());
                }
                direct::Outcome::Unusable(e) => e,
            },
            Err(e) => e.to_string(),
        };
        tracing::debug!(socket = %direct::SOCKET, "systemd's private socket is not usable ({unusable}); using the system bus");
        let conn = connect()?;
        tracing::trace!(elapsed = ?t0.elapsed(), "bus connected");
        bus::start_transient_unit(&conn, &spec.unit, props(), JOB_TIMEOUT)
            .map_err(|f| Error::starting(&spec.unit, f))?;
        tracing::debug!(unit = %spec.unit, elapsed = ?t0.elapsed(), via = "system bus", "scope registered over the system bus");
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

/// The system bus, when systemd's private socket is not usable.
fn connect() -> Result<zbus::blocking::Connection, Error> {
    zbus::blocking::Connection::system().map_err(|e| Error::Connect(Box::new(e)))
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

#[cfg(test)]
mod tests {
    use super::{bus, Error};

    #[test]
    fn dbus_error_names_with_a_known_cause_are_told_apart() {
        let call = |name: &str| bus::Failure::Call {
            name: name.into(),
            message: "m".into(),
        };
        let e = Error::starting("s.scope", call("org.freedesktop.systemd1.UnitExists"));
        assert!(matches!(e, Error::UnitExists { .. }), "{e:?}");
        assert!(
            e.to_string().contains("unit_name must be unique per run"),
            "{e}"
        );
        let e = Error::starting("s.scope", call("org.freedesktop.DBus.Error.AccessDenied"));
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        let e = Error::starting("s.scope", call("org.example.Other"));
        assert_eq!(e.to_string(), "org.example.Other: m");
        let e = Error::starting("s.scope", bus::Failure::Job("failed".into()));
        assert_eq!(
            e.to_string(),
            "systemd's job to start s.scope ended with result `failed` (see journalctl -u s.scope)"
        );
    }
}
