//! `stockade metrics [--listen ADDR]`: the running sandboxes' figures in the Prometheus text
//! format (`ops::metrics` renders them), printed once or served at `GET /metrics`. The
//! request is parsed by `httparse`; this file only bounds it (size, time, connections) and
//! writes the answer. Every connection is closed after one answer, and no request, however
//! malformed, oversized or slow, ends the server: it gets a 4xx and the next one is served.

use super::{instances, instances_cached};
use crate::error::Error;
use crate::ops::{metrics, records, status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest request head read; a longer one is answered 431.
const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request head, and to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered at once; one more is answered 503 at once (Prometheus scrapes one
/// at a time, so this only bounds a misbehaving client's threads).
const MAX_CONNECTIONS: usize = 16;
/// What is read and thrown away after an early answer (431, 400), so that closing a socket
/// with unread data does not reset it before the client has read that answer.
const DRAIN: usize = 1 << 20;

/// The exposition of these running sandboxes, now.
fn render(running: &[records::Instance]) -> String {
    let statuses: Vec<status::Status> = running.iter().map(status::of).collect();
    metrics::render(&statuses)
}

pub fn metrics(listen: Option<SocketAddr>) -> Result<u8, Error> {
    let Some(addr) = listen else {
        print!("{}", render(&instances()?));
        return Ok(0);
    };
    // Refused before the port is taken: a server that can only answer 500 is no use.
    super::require_root("serving the records of running sandboxes")?;
    let listener = TcpListener::bind(addr).map_err(|e| Error::Listen {
        addr: addr.to_string(),
        detail: e.to_string(),
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    // Printed, not logged: the port chosen for `:0` is what a caller waits for.
    eprintln!("stockade: serving http://{local}/metrics");
    let busy = Arc::new(AtomicUsize::new(0));
    // Shared by the connections: each scrape parses only the records it has not seen.
    let cache = Arc::new(records::Cache::default());
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, say: the next accept may work once some are closed.
                tracing::warn!("metrics: accept on {local}: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = stream.write_all(&head(503, "text/plain", 0, ""));
            continue;
        }
        let busy = Arc::clone(&busy);
        let cache = Arc::clone(&cache);
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                serve(stream, &cache);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!("metrics: cannot start a thread for a connection: {e}");
        }
    }
    Ok(0)
}

/// What to answer: status, content type, body, extra header lines.
struct Answer {
    code: u16,
    body: String,
    extra: &'static str,
    /// The request was not read to its end: drain before closing.
    early: bool,
}

impl Answer {
    fn error(code: u16, early: bool) -> Answer {
        Answer {
            code,
            body: format!("{}\n", reason(code)),
            extra: "",
            early,
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn head(code: u16, content_type: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n",
        reason(code)
    )
    .into_bytes()
}

/// Reads one request head (at most [`MAX_REQUEST`] bytes, within [`IO_TIMEOUT`]) and answers it.
fn serve(mut stream: TcpStream, cache: &records::Cache) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Some(answer) = read_request(&mut stream, cache) else {
        return;
    };
    let content_type = if answer.code == 200 {
        metrics::CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = head(answer.code, content_type, answer.body.len(), answer.extra);
    out.extend_from_slice(answer.body.as_bytes());
    if stream.write_all(&out).is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if answer.early {
        drain(&mut stream);
    }
}

/// The answer to the request on `stream`; None when the client went away before sending one.
fn read_request(stream: &mut TcpStream, cache: &records::Cache) -> Option<Answer> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if len == buf.len() {
            return Some(Answer::error(431, true));
        }
        if Instant::now() > deadline {
            // A client trickling a byte at a time resets the read timeout with each one.
            return Some(Answer::error(408, true));
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) if len == 0 => return None,
            Ok(0) => return Some(Answer::error(400, false)),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Some(Answer::error(408, true))
            }
            Err(_) => return None,
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return Some(route(
                    req.method.unwrap_or(""),
                    req.path.unwrap_or(""),
                    cache,
                ))
            }
            Ok(httparse::Status::Partial) => continue,
            Err(httparse::Error::TooManyHeaders) => return Some(Answer::error(431, true)),
            Err(_) => return Some(Answer::error(400, true)),
        }
    }
}

/// `GET /metrics` (a query string is ignored) and nothing else.
fn route(method: &str, path: &str, cache: &records::Cache) -> Answer {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != "/metrics" {
        return Answer::error(404, false);
    }
    if method != "GET" {
        return Answer {
            extra: "Allow: GET\r\n",
            ..Answer::error(405, true)
        };
    }
    match instances_cached(cache) {
        Ok(running) => Answer {
            code: 200,
            body: render(&running),
            extra: "",
            early: false,
        },
        Err(e) => Answer {
            body: format!("{e}\n"),
            ..Answer::error(500, false)
        },
    }
}

/// Reads what the client still sends (a body, the rest of an oversized head), bounded in
/// size and time, so that the close is a FIN and the client sees the answer.
fn drain(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 8192];
    let mut total = 0;
    while total < DRAIN {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// `--listen`: `IP:PORT`, or a bare `PORT` on 127.0.0.1.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("expected IP:PORT or PORT (on 127.0.0.1), not `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_loopback_port() {
        assert_eq!(listen_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(listen_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(listen_addr("[::1]:9464").unwrap().to_string(), "[::1]:9464");
        assert!(listen_addr("localhost:9464").is_err());
    }

    #[test]
    fn only_get_metrics_is_served() {
        let c = records::Cache::default();
        assert_eq!(route("GET", "/other", &c).code, 404);
        assert_eq!(route("POST", "/metrics", &c).code, 405);
        assert_eq!(route("POST", "/metrics", &c).extra, "Allow: GET\r\n");
        assert_eq!(route("HEAD", "/metrics?x=1", &c).code, 405);
    }
}
