//! A small client for the one systemd Manager call stockade makes over the system bus:
//! StartTransientUnit, and waiting for its job. Also the parts both paths share (`direct.rs`
//! makes the same call on systemd's private socket): the messages, and the wait for the job.
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
#[derive(Debug)]
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
    /// Reading or writing systemd's private socket failed, or it sent what we cannot read.
    Socket(String),
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

/// `Subscribe` (without it systemd does not emit JobRemoved) and the `StartTransientUnit`
/// call itself, the same on both paths.
pub fn calls(name: &str, properties: Vec<(&str, Value<'_>)>) -> zbus::Result<(Message, Message)> {
    let subscribe = manager_call("Subscribe")?.build(&())?;
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let start = manager_call("StartTransientUnit")?.build(&(name, "fail", properties, aux))?;
    Ok((subscribe, start))
}

/// What a message from systemd means to the wait for our job.
#[derive(Debug)]
pub enum Event {
    Error {
        reply_to: Option<u32>,
        name: String,
        message: String,
    },
    Return {
        reply_to: Option<u32>,
        /// The body as an object path, when it is one (StartTransientUnit's job).
        job: Option<String>,
    },
    JobRemoved {
        path: String,
        result: String,
    },
    Other,
}

/// The wait for the job of a StartTransientUnit call: an error reply to any of our calls
/// ends it, the reply to the start names the job, and that job's JobRemoved gives the result.
pub struct Wait {
    ours: Vec<u32>,
    start: u32,
    job: Option<String>,
    /// JobRemoved may come before we know our job's path; kept until then.
    removed: Vec<(String, String)>,
}

fn serial(m: &Message) -> u32 {
    NonZeroU32::get(m.primary_header().serial_num())
}

impl Wait {
    pub fn new(ours: &[&Message], start: &Message) -> Wait {
        Wait {
            ours: ours.iter().map(|m| serial(m)).collect(),
            start: serial(start),
            job: None,
            removed: Vec::new(),
        }
    }

    /// Takes one event; the outcome once the wait is over.
    pub fn feed(&mut self, ev: Event) -> Option<Result<(), Failure>> {
        match ev {
            Event::Error {
                reply_to: Some(s),
                name,
                message,
            } if self.ours.contains(&s) => return Some(Err(Failure::Call { name, message })),
            Event::Return {
                reply_to: Some(s),
                job,
            } if s == self.start => match job {
                Some(j) => self.job = Some(j),
                None => {
                    return Some(Err(Failure::Socket(
                        "StartTransientUnit's reply is not a job path".into(),
                    )))
                }
            },
            Event::JobRemoved { path, result } => self.removed.push((path, result)),
            _ => {}
        }
        let job = self.job.as_ref()?;
        let (_, result) = self.removed.iter().find(|(p, _)| p == job)?;
        Some(if result == "done" {
            Ok(())
        } else {
            Err(Failure::Job(result.clone()))
        })
    }
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
    let (subscribe, start) = calls(name, properties)?;
    let mut wait = Wait::new(&[&add_match, &subscribe, &start], &start);

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
    loop {
        let msg = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| Failure::Timeout)?;
        let header = msg.header();
        let reply_to = header.reply_serial().map(NonZeroU32::get);
        let ev = match msg.message_type() {
            Type::Error => Event::Error {
                reply_to,
                name: header
                    .error_name()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                message: msg.body().deserialize::<String>().unwrap_or_default(),
            },
            Type::MethodReturn => Event::Return {
                reply_to,
                job: msg
                    .body()
                    .deserialize::<OwnedObjectPath>()
                    .ok()
                    .map(|p| p.as_str().to_owned()),
            },
            Type::Signal if header.member().is_some_and(|m| m.as_str() == "JobRemoved") => {
                let (_, path, _, result): (u32, OwnedObjectPath, String, String) =
                    msg.body().deserialize()?;
                Event::JobRemoved {
                    path: path.as_str().to_owned(),
                    result,
                }
            }
            _ => Event::Other,
        };
        if let Some(done) = wait.feed(ev) {
            return done;
        }
    }
}
