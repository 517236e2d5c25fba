//! A small hand-written client for the one systemd Manager call stockade makes:
//! StartTransientUnit, and waiting for its job.
//!
//! The three messages it needs (AddMatch for JobRemoved, Subscribe, StartTransientUnit) are
//! sent back to back instead of one round trip each: the bus daemon handles a connection's
//! messages in order, so the match exists and the subscription is active before systemd
//! starts the job, and no JobRemoved can be missed.

use std::num::NonZeroU32;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zbus::message::{Message, Type};
use zbus::zvariant::{OwnedObjectPath, Value};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Why the job did not start the unit.
pub enum Failure {
    /// The bus or systemd answered with an error.
    Call {
        name: String,
        message: String,
    },
    /// The job ended with a result other than "done".
    Job(String),
    Timeout,
    Bus(zbus::Error),
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Self {
        Failure::Bus(e)
    }
}

fn manager_call(method: &str) -> zbus::Result<zbus::message::Builder<'_>> {
    Message::method_call(PATH, method)?
        .destination(SYSTEMD)?
        .interface(MANAGER)
}

/// Starts a transient unit and returns once its job finished with result "done".
pub fn start_transient_unit(
    conn: &zbus::blocking::Connection,
    name: &str,
    properties: Vec<(&str, Value<'_>)>,
    timeout: Duration,
) -> Result<(), Failure> {
    let incoming = zbus::blocking::MessageIterator::from(conn);
    let rule = format!(
        "type='signal',sender='{SYSTEMD}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
    );
    let add_match = Message::method_call("/org/freedesktop/DBus", "AddMatch")?
        .destination("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .build(&(rule.as_str(),))?;
    // Without a subscription systemd does not emit JobRemoved.
    let subscribe = manager_call("Subscribe")?.build(&())?;
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let start = manager_call("StartTransientUnit")?.build(&(name, "fail", properties, aux))?;
    let ours: Vec<NonZeroU32> = [&add_match, &subscribe, &start]
        .iter()
        .map(|m| m.primary_header().serial_num())
        .collect();
    let start_serial = ours[2];

    // Read replies and signals on a thread so the wait can time out.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for msg in incoming.flatten() {
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    conn.send(&add_match)?;
    conn.send(&subscribe)?;
    conn.send(&start)?;

    let deadline = Instant::now() + timeout;
    let mut job: Option<String> = None;
    // JobRemoved may come before we know our job's path; keep what arrives until then.
    let mut removed: Vec<(String, String)> = Vec::new();
    loop {
        if let Some(j) = &job {
            if let Some((_, result)) = removed.iter().find(|(p, _)| p == j) {
                return if result == "done" {
                    Ok(())
                } else {
                    Err(Failure::Job(result.clone()))
                };
            }
        }
        let msg = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| Failure::Timeout)?;
        let header = msg.header();
        let reply_to = header.reply_serial();
        match msg.message_type() {
            Type::Error if reply_to.is_some_and(|s| ours.contains(&s)) => {
                let name = header
                    .error_name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let message = msg.body().deserialize::<String>().unwrap_or_default();
                return Err(Failure::Call { name, message });
            }
            Type::MethodReturn if reply_to == Some(start_serial) => {
                let path: OwnedObjectPath = msg.body().deserialize()?;
                job = Some(path.as_str().to_owned());
            }
            Type::Signal if header.member().is_some_and(|m| m.as_str() == "JobRemoved") => {
                let (_, path, _, result): (u32, OwnedObjectPath, String, String) =
                    msg.body().deserialize()?;
                removed.push((path.as_str().to_owned(), result));
            }
            _ => {}
        }
    }
}
