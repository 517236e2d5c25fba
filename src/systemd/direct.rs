//! The same StartTransientUnit call as `bus.rs`, over systemd's own socket
//! `/run/systemd/private` instead of the system bus: one hop less (no bus daemon) and no
//! `Hello`, as `systemd-run` does as root.
//!
//! zbus cannot read this connection: systemd sets the sender field to
//! `org.freedesktop.systemd1` on direct connections and zbus rejects that as a unique name
//! (zbus issue 1497). So outgoing messages are built with zbus's builder and written as
//! bytes, and incoming ones are split here (fixed header and header fields) with only their
//! bodies decoded by zvariant. No thread is started: the socket's read timeout bounds the wait.

use super::bus::{Event, Failure, Wait};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use zbus::zvariant::{serialized, Endian, OwnedObjectPath, Type, Value};

pub const SOCKET: &str = "/run/systemd/private";

/// A connection to systemd's private socket.
pub struct Direct {
    sock: UnixStream,
    /// Bytes read but not yet taken as a message.
    buf: Vec<u8>,
}

/// Whether systemd took the call at all.
pub enum Outcome {
    /// systemd did not authenticate us (refused, or closed the connection): nothing was
    /// done, and the system bus may be tried.
    Unusable(String),
    /// systemd authenticated us, and this is how the call ended.
    Done(Result<(), Failure>),
}

impl Direct {
    /// Connects. An error here means "use the system bus instead": the socket is absent
    /// (ENOENT) or not ours to use (EACCES, not root).
    pub fn connect(path: &str) -> io::Result<Direct> {
        Ok(Direct {
            sock: UnixStream::connect(path)?,
            buf: Vec::new(),
        })
    }

    /// Starts a transient unit and returns once its job finished with result "done".
    ///
    /// Authentication and the calls go in one write: systemd reads the calls only after it
    /// accepted `BEGIN`, so a refusal leaves nothing done, and the round trip of the SASL
    /// exchange is saved (systemd, not this process, is what a loaded host makes wait).
    pub fn start_transient_unit(
        &mut self,
        name: &str,
        properties: Vec<(&str, Value<'_>)>,
        timeout: Duration,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        // Without a subscription systemd does not emit JobRemoved; on a direct connection
        // it sends its signals to every subscribed client, so no AddMatch is needed.
        let (subscribe, start) = match super::bus::calls(name, properties) {
            Ok(c) => c,
            Err(e) => return Outcome::Done(Err(e.into())),
        };
        let mut wait = Wait::new(&[&subscribe, &start], &start);
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let mut out = format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").into_bytes();
        out.extend_from_slice(subscribe.data().bytes());
        out.extend_from_slice(start.data().bytes());
        if let Err(e) = self.sock.write_all(&out) {
            return Outcome::Unusable(e.to_string());
        }
        match self.auth_reply(deadline) {
            Ok(line) if line.starts_with("OK ") => {}
            Ok(line) => {
                return Outcome::Unusable(format!("systemd refused authentication: {line}"))
            }
            Err(Failure::Timeout) => return Outcome::Done(Err(Failure::Timeout)),
            Err(Failure::Socket(e)) => return Outcome::Unusable(e),
            Err(f) => return Outcome::Done(Err(f)),
        }
        Outcome::Done(loop {
            let msg = match self.next(deadline) {
                Ok(m) => m,
                Err(f) => break Err(f),
            };
            match msg.event() {
                Ok(ev) => {
                    if let Some(done) = wait.feed(ev) {
                        break done;
                    }
                }
                Err(f) => break Err(f),
            }
        })
    }

    /// The server's one SASL line (`OK <guid>` or `REJECTED ...`).
    fn auth_reply(&mut self, deadline: Instant) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(Failure::Socket("overlong SASL reply".into()));
            }
            self.fill(deadline)?;
        }
    }

    /// The next whole message, read before `deadline`.
    fn next(&mut self, deadline: Instant) -> Result<Incoming, Failure> {
        loop {
            if let Some(msg) = Incoming::split(&mut self.buf)? {
                return Ok(msg);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads what the socket has, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> Result<(), Failure> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Timeout);
            }
            self.sock.set_read_timeout(Some(left)).map_err(io_failure)?;
            let mut chunk = [0u8; 8192];
            return match self.sock.read(&mut chunk) {
                Ok(0) => Err(Failure::Socket("systemd closed the connection".into())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(())
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(Failure::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(io_failure(e)),
            };
        }
    }
}

fn io_failure(e: io::Error) -> Failure {
    Failure::Socket(e.to_string())
}

fn bad(what: &str) -> Failure {
    Failure::Socket(format!("malformed message from systemd: {what}"))
}

/// One message as it came off the socket: the header fields this client needs, and the body.
#[derive(Debug, Default)]
struct Incoming {
    kind: u8,
    endian: Option<Endian>,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    member: Option<String>,
    signature: String,
    body: Vec<u8>,
}

const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Reads the header of a D-Bus message from a byte slice, by the wire format's rules.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    big: bool,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Failure> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| bad("truncated header"))?;
        self.pos += n;
        Ok(s)
    }
    fn align(&mut self, a: usize) {
        self.pos = (self.pos + a - 1) & !(a - 1);
    }
    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Failure> {
        self.align(4);
        let big = self.big;
        let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    /// A string (`s`, `o`: u32 length) or a signature (`g`: u8 length), with its NUL.
    fn string(&mut self, sig: bool) -> Result<String, Failure> {
        let len = if sig {
            self.u8()? as usize
        } else {
            self.u32()? as usize
        };
        let s = String::from_utf8(self.take(len)?.to_vec()).map_err(|_| bad("not UTF-8"))?;
        self.take(1)?;
        Ok(s)
    }
}

impl Incoming {
    /// Takes one whole message off the front of `buf`, if it holds one.
    fn split(buf: &mut Vec<u8>) -> Result<Option<Incoming>, Failure> {
        if buf.len() < 16 {
            return Ok(None);
        }
        let big = match buf[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(bad("unknown byte order")),
        };
        let mut c = Cursor {
            b: buf,
            pos: 4,
            big,
        };
        let body_len = c.u32()? as usize;
        let _serial = c.u32()?;
        let fields_len = c.u32()? as usize;
        let body_at = align8(16 + fields_len);
        let total = body_at + body_len;
        if fields_len > 1 << 26 || body_len > 1 << 27 {
            return Err(bad("message too large"));
        }
        if buf.len() < total {
            return Ok(None);
        }
        let mut m = Incoming {
            kind: buf[1],
            endian: Some(if big { Endian::Big } else { Endian::Little }),
            ..Default::default()
        };
        let mut c = Cursor {
            b: &buf[..16 + fields_len],
            pos: 16,
            big,
        };
        while c.pos < 16 + fields_len {
            c.align(8);
            let code = c.u8()?;
            let sig = c.string(true)?;
            match sig.as_str() {
                "s" | "o" => {
                    let v = c.string(false)?;
                    match code {
                        3 => m.member = Some(v),
                        4 => m.error_name = Some(v),
                        _ => {}
                    }
                }
                "g" => {
                    let v = c.string(true)?;
                    if code == 8 {
                        m.signature = v;
                    }
                }
                "u" => {
                    let v = c.u32()?;
                    if code == 5 {
                        m.reply_serial = Some(v);
                    }
                }
                _ => return Err(bad("unexpected header field type")),
            }
        }
        m.body = buf[body_at..total].to_vec();
        buf.drain(..total);
        Ok(Some(m))
    }

    /// The body as `T`, when its signature is `T`'s.
    fn body<T>(&self) -> Result<T, Failure>
    where
        T: Type + serde::de::DeserializeOwned,
    {
        // A body's signature lists its arguments without the parentheses of a struct.
        let want = T::SIGNATURE.to_string();
        let want = match want.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
            Some(inner) => inner.to_owned(),
            None => want,
        };
        if self.signature != want {
            return Err(bad("unexpected body signature"));
        }
        let ctxt = serialized::Context::new_dbus(self.endian.unwrap_or(Endian::Little), 0);
        let data = serialized::Data::new(self.body.as_slice(), ctxt);
        let (v, _) = data
            .deserialize::<T>()
            .map_err(|e| Failure::Socket(e.to_string()))?;
        Ok(v)
    }

    fn event(&self) -> Result<Event, Failure> {
        Ok(match self.kind {
            ERROR => Event::Error {
                reply_to: self.reply_serial,
                name: self.error_name.clone().unwrap_or_default(),
                message: self.body::<String>().unwrap_or_default(),
            },
            METHOD_RETURN => Event::Return {
                reply_to: self.reply_serial,
                job: self
                    .body::<OwnedObjectPath>()
                    .ok()
                    .map(|p| p.as_str().to_owned()),
            },
            SIGNAL if self.member.as_deref() == Some("JobRemoved") => {
                let (_, path, _, result): (u32, OwnedObjectPath, String, String) = self.body()?;
                Event::JobRemoved {
                    path: path.as_str().to_owned(),
                    result,
                }
            }
            _ => Event::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, Incoming};
    use zbus::message::Message;

    /// A message zbus builds is split back into the fields the wait needs, and a partial
    /// one waits for more bytes.
    #[test]
    fn a_signal_is_split_from_its_bytes() {
        let m = Message::signal(
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "JobRemoved",
        )
        .unwrap()
        .build(&(
            7u32,
            zbus::zvariant::ObjectPath::try_from("/org/freedesktop/systemd1/job/7").unwrap(),
            "a.scope",
            "done",
        ))
        .unwrap();
        let bytes = m.data().bytes().to_vec();
        let mut buf = bytes[..bytes.len() - 1].to_vec();
        assert!(Incoming::split(&mut buf).unwrap().is_none());
        buf.push(*bytes.last().unwrap());
        buf.extend_from_slice(&bytes);
        let first = Incoming::split(&mut buf).unwrap().unwrap();
        match first.event().unwrap() {
            Event::JobRemoved { path, result } => {
                assert_eq!(path, "/org/freedesktop/systemd1/job/7");
                assert_eq!(result, "done");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            buf.len(),
            bytes.len(),
            "the second message stays in the buffer"
        );
    }
}
