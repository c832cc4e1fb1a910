//! A fault-injecting HTTP proxy between the plugin and a real sqld. It only adds faults sqld
//! cannot produce by itself (lost responses, 5xx answers, cut connections, delays); every request
//! it forwards is served by the real sqld.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to do with the n-th request (counted from 0 over the proxy's life).
#[derive(Debug, Clone)]
pub enum Action {
    Forward,
    /// Forward to sqld, let it commit, then close the connection without answering.
    ForwardThenDrop,
    /// Close the connection before forwarding anything.
    Close,
    /// Answer with this status and body without forwarding.
    Respond(u16, String),
    /// Wait, then forward.
    Delay(Duration),
    /// Wait, forward (the client has usually given up by then), then raise the flag: a request
    /// delivered late, as behind a proxy that answered 504 while sqld kept working.
    Late(Duration, Arc<AtomicBool>),
    /// Forward with the request body rewritten by this function (content-length fixed), to play
    /// a server that lacks something sqld has.
    Rewrite(fn(&str) -> String),
    /// Forward, then answer with sqld's response body rewritten by this function.
    RewriteResponse(fn(&str) -> String),
}

pub struct Proxy {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, decide: impl Fn(usize) -> Action + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let decide = Arc::new(decide);
        let (r, s) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, d) = (r.clone(), decide.clone());
                std::thread::spawn(move || serve(conn, upstream, &r, &*d));
            }
        });
        Proxy {
            port,
            requests,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: u16,
    count: &AtomicUsize,
    decide: &dyn Fn(usize) -> Action,
) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut conn, &mut buf) else {
            return;
        };
        let n = count.fetch_add(1, Ordering::SeqCst);
        let reply = match decide(n) {
            Action::Close => return,
            Action::Respond(status, body) => Some((status, body.into_bytes())),
            Action::Delay(d) => {
                std::thread::sleep(d);
                forward(upstream, &request)
            }
            Action::Late(d, landed) => {
                std::thread::sleep(d);
                let reply = forward(upstream, &request);
                landed.store(true, Ordering::SeqCst);
                reply
            }
            Action::Forward => forward(upstream, &request),
            Action::Rewrite(f) => forward(upstream, &rewrite_body(&request, f)),
            Action::RewriteResponse(f) => forward(upstream, &request)
                .map(|(status, body)| (status, f(&String::from_utf8_lossy(&body)).into_bytes())),
            Action::ForwardThenDrop => {
                let _ = forward(upstream, &request);
                return;
            }
        };
        let Some((status, body)) = reply else { return };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if conn
            .write_all(head.as_bytes())
            .and_then(|_| conn.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

/// Reads one full request (headers + content-length body) from a keep-alive connection.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if buf.len() >= end + 4 + len {
                let rest = buf.split_off(end + 4 + len);
                return Some(std::mem::replace(buf, rest));
            }
        }
        let mut chunk = [0u8; 65536];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The request with its body replaced by `f(body)` and its content-length header fixed.
fn rewrite_body(request: &[u8], f: fn(&str) -> String) -> Vec<u8> {
    let end = find(request, b"\r\n\r\n").expect("a request read whole has a blank line");
    let body = f(&String::from_utf8_lossy(&request[end + 4..]));
    let head = String::from_utf8_lossy(&request[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("content-length: {}", body.len()));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

fn forward(upstream: u16, request: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.write_all(request).ok()?;
    let mut buf = Vec::new();
    loop {
        if let Some((status, _, body)) = parse_response(&buf) {
            return Some((status, body));
        }
        let mut chunk = [0u8; 65536];
        match up.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete HTTP/1.1 response (content-length or chunked); None while incomplete.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let lower = head.to_ascii_lowercase();
    let body = &raw[end + 4..];
    if lower.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = find(&body[pos..], b"\r\n")? + pos;
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&body[pos..line_end]).trim(), 16)
                    .ok()?;
            pos = line_end + 2;
            if size == 0 {
                return Some((status, head, out));
            }
            if body.len() < pos + size + 2 {
                return None;
            }
            out.extend_from_slice(&body[pos..pos + size]);
            pos += size + 2;
        }
    }
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    (body.len() >= len).then(|| (status, head, body[..len].to_vec()))
}
