//! HTTP transport for Hrana pipelines: one tokio runtime and one keep-alive reqwest client per
//! backend, requests polled in short slices so PostgreSQL interrupts are honoured, and transport
//! errors sorted into retryable and permanent. No PostgreSQL here: the interrupt check is passed
//! in, and `crate::error` gives each error its SQLSTATE.
//!
//! The runtime has one I/O thread, so a request can travel and be applied by Turso while the
//! backend decodes the next part of a large transaction ([`Transport::start`]). That thread
//! blocks every signal (PostgreSQL's handlers stay on the backend's thread) and never calls
//! into PostgreSQL.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::turso::hrana::{PipelineRequest, PipelineResponse};

/// How long one poll slice lasts before PostgreSQL interrupts are checked.
const SLICE: Duration = Duration::from_millis(100);
/// Longest part of an error body that is quoted in a message.
const BODY_QUOTE: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made: the request was certainly not applied.
    #[error("could not connect to \"{url}\": {detail}")]
    Connect { url: String, detail: String },
    /// The request failed after it may have been sent: its outcome is unknown.
    #[error("could not reach \"{url}\": {detail}")]
    Network { url: String, detail: String },
    #[error("request to \"{url}\" timed out after {ms} ms")]
    Timeout { url: String, ms: u64 },
    #[error("authentication failed (HTTP {status}): {body}")]
    Auth { status: u16, body: String },
    #[error("Turso answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("invalid response from Turso: {0}")]
    Protocol(String),
    #[error("could not set up TLS: {0}")]
    Tls(String),
    #[error("Turso stream error: {message}")]
    Stream {
        message: String,
        code: Option<String>,
    },
    #[error("statement failed in Turso: {message} (statement: {sql})")]
    Statement { message: String, sql: String },
    /// SQLITE_BUSY: another connection held Turso's write lock; the batch rolled back.
    #[error("Turso's database is locked by another writer")]
    Busy,
}

impl ClientError {
    /// Transient failures worth retrying: network trouble, timeouts, 429 and 5xx, expired streams.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Network { .. }
            | ClientError::Timeout { .. }
            | ClientError::Busy => true,
            ClientError::Http { status, .. } => *status == 429 || *status >= 500,
            ClientError::Stream { code, .. } => code
                .as_deref()
                .is_some_and(|c| c.contains("STREAM_EXPIRED")),
            _ => false,
        }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            ClientError::Connect { .. } | ClientError::Network { .. } | ClientError::Timeout { .. } => {
                "Check that Turso is reachable at the \"url\" option, then re-run the decoding call; nothing is lost.".into()
            }
            ClientError::Auth { .. } => {
                "Check the \"auth\" option: it must be a valid Turso token for this database.".into()
            }
            ClientError::Http { .. } | ClientError::Stream { .. } => {
                "Re-run the decoding call; nothing is lost.".into()
            }
            ClientError::Protocol(_) => {
                "Check that the \"url\" option points at a Turso (sqld) server.".into()
            }
            ClientError::Tls(_) => {
                "The \"ca_file\" option must name a readable PEM file of CA certificates.".into()
            }
            ClientError::Statement { .. } => {
                "Check that the Turso table matches the PostgreSQL table, then re-run the decoding call.".into()
            }
            ClientError::Busy => {
                "Another connection kept Turso's write lock for longer than the retries (option retry_ms); re-run the decoding call; nothing is lost.".into()
            }
        }
    }
}

/// Sends pipeline requests; `base_url` overrides the configured URL for a stream that asked for it.
pub trait Transport {
    fn pipeline(
        &mut self,
        base_url: Option<&str>,
        request: &PipelineRequest,
    ) -> Result<PipelineResponse, ClientError>;

    /// Waits before a retry (interruptibly, for the real transport).
    fn pause(&mut self, duration: Duration);

    /// Starts sending `request` and returns at once; [`Transport::finish`] waits for the answer.
    fn start(&mut self, base_url: Option<&str>, request: &PipelineRequest) -> InFlight {
        InFlight::Done(self.pipeline(base_url, request))
    }

    /// The answer of a request begun with [`Transport::start`].
    fn finish(&mut self, in_flight: InFlight) -> Result<PipelineResponse, ClientError> {
        match in_flight {
            InFlight::Done(r) => r,
            InFlight::Running(_) => Err(ClientError::Protocol(
                "this transport cannot run requests in the background".into(),
            )),
        }
    }
}

/// A request that is travelling, or its outcome.
pub enum InFlight {
    Done(Result<PipelineResponse, ClientError>),
    Running(tokio::task::JoinHandle<Result<PipelineResponse, ClientError>>),
}

/// The pipeline endpoint for a server base URL.
pub fn pipeline_url(base: &str) -> String {
    format!("{}/v2/pipeline", base.trim_end_matches('/'))
}

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
/// Keep-alive clients of this backend, one per CA file (usually just one).
static CLIENTS: Mutex<Vec<(Option<String>, reqwest::Client)>> = Mutex::new(Vec::new());

/// Keeps PostgreSQL's signals (cancel, terminate, latch wake-ups) on the backend's own thread.
fn block_signals() {
    // SAFETY: plain libc calls on a local, zero-initialised signal set for the calling thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Runs `f` with every signal blocked on the calling thread, then restores its mask: a thread
/// created inside inherits the blocked mask from its first instruction, so no PostgreSQL signal
/// can be delivered to it before its own start hook runs.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain libc calls on local signal sets for the calling thread.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let out = f();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    out
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, ClientError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = with_signals_blocked(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pgturso-io")
            .on_thread_start(block_signals)
            .enable_io()
            .enable_time()
            .build()
    })
    .map_err(|e| ClientError::Protocol(format!("could not start the I/O runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// The backend's client for `ca_file`: system roots, plus the certificates of `ca_file` if given.
fn http_client(ca_file: Option<&str>) -> Result<reqwest::Client, ClientError> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(f, _)| f.as_deref() == ca_file) {
        return Ok(c.clone());
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Tls(format!("could not read CA file \"{path}\": {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Tls(format!("no certificate in CA file \"{path}\": {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Tls(format!(
                "no certificate in CA file \"{path}\""
            )));
        }
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder
        .build()
        .map_err(|e| ClientError::Tls(format!("could not build the HTTP client: {e}")))?;
    clients.push((ca_file.map(str::to_string), client.clone()));
    Ok(client)
}

/// Runs `fut` to completion on the backend's runtime, calling `check` between short slices
/// (`check` may raise a PostgreSQL error, which drops the future and its connection).
pub fn run_blocking<F: Future>(fut: F, check: &mut dyn FnMut()) -> Result<F::Output, ClientError> {
    let rt = runtime()?;
    // Timers (the slices below, and any inside `fut`) are created inside the runtime's context.
    let _entered = rt.enter();
    let mut fut = std::pin::pin!(fut);
    loop {
        match rt.block_on(tokio::time::timeout(SLICE, fut.as_mut())) {
            Ok(out) => return Ok(out),
            Err(_) => check(),
        }
    }
}

/// The real transport: HTTP POSTs through the shared keep-alive client.
pub struct HttpTransport {
    base_url: String,
    ca_file: Option<String>,
    auth_header: Option<String>,
    timeout: Duration,
    check_interrupts: fn(),
}

impl HttpTransport {
    pub fn new(
        base_url: String,
        ca_file: Option<String>,
        token: Option<&str>,
        timeout: Duration,
        check_interrupts: fn(),
    ) -> Self {
        HttpTransport {
            base_url,
            ca_file,
            auth_header: token.map(|t| format!("Bearer {t}")),
            timeout,
            check_interrupts,
        }
    }
}

fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        src = s.source();
    }
    msg
}

fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_QUOTE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

impl HttpTransport {
    /// The request as a future that owns everything it needs (so it can run on the I/O thread).
    fn request(
        &self,
        base_url: Option<&str>,
        request: &PipelineRequest,
    ) -> Result<
        impl Future<Output = Result<PipelineResponse, ClientError>> + Send + 'static,
        ClientError,
    > {
        let url = pipeline_url(base_url.unwrap_or(&self.base_url));
        let body = serde_json::to_vec(request)
            .map_err(|e| ClientError::Protocol(format!("could not encode request: {e}")))?;
        // reqwest builds its connector inside the runtime's context.
        let _entered = runtime()?.enter();
        let client = http_client(self.ca_file.as_deref())?;
        let mut req = client
            .post(&url)
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .body(body);
        if let Some(h) = &self.auth_header {
            req = req.header("authorization", h);
        }
        let timeout_ms = self.timeout.as_millis() as u64;
        Ok(async move {
            let sent = async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            };
            let (status, bytes) = sent.await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect {
                        url: url.clone(),
                        detail: describe(e),
                    }
                } else if e.is_timeout() {
                    ClientError::Timeout {
                        url: url.clone(),
                        ms: timeout_ms,
                    }
                } else {
                    ClientError::Network {
                        url: url.clone(),
                        detail: describe(e),
                    }
                }
            })?;
            match status {
                200..=299 => serde_json::from_slice(&bytes).map_err(|e| {
                    ClientError::Protocol(format!(
                        "{e} in response body \"{}\"",
                        quote_body(&bytes)
                    ))
                }),
                401 | 403 => Err(ClientError::Auth {
                    status,
                    body: quote_body(&bytes),
                }),
                _ => Err(ClientError::Http {
                    status,
                    body: quote_body(&bytes),
                }),
            }
        })
    }
}

impl Transport for HttpTransport {
    fn pipeline(
        &mut self,
        base_url: Option<&str>,
        request: &PipelineRequest,
    ) -> Result<PipelineResponse, ClientError> {
        let fut = self.request(base_url, request)?;
        let check = self.check_interrupts;
        run_blocking(fut, &mut || check())?
    }

    fn pause(&mut self, duration: Duration) {
        let check = self.check_interrupts;
        let _ = run_blocking(
            async move { tokio::time::sleep(duration).await },
            &mut || check(),
        );
    }

    fn start(&mut self, base_url: Option<&str>, request: &PipelineRequest) -> InFlight {
        match (self.request(base_url, request), runtime()) {
            (Ok(fut), Ok(rt)) => InFlight::Running(rt.spawn(fut)),
            (Err(e), _) | (_, Err(e)) => InFlight::Done(Err(e)),
        }
    }

    fn finish(&mut self, in_flight: InFlight) -> Result<PipelineResponse, ClientError> {
        match in_flight {
            InFlight::Done(r) => r,
            InFlight::Running(handle) => {
                let check = self.check_interrupts;
                // If `check` raises (a cancel), the handle is dropped and the request abandoned:
                // it carries no COMMIT, so Turso rolls its stream back when it expires.
                run_blocking(handle, &mut || check())?.unwrap_or_else(|e| {
                    Err(ClientError::Protocol(format!(
                        "the request task failed: {e}"
                    )))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signals blocked on the calling thread right now.
    fn blocked_now() -> libc::sigset_t {
        // SAFETY: reads the calling thread's mask into a local set.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
            cur
        }
    }

    #[test]
    fn threads_created_with_signals_blocked_start_blocked_and_the_caller_gets_its_mask_back() {
        let is_blocked = |set: &libc::sigset_t, sig| {
            // SAFETY: a membership test on a valid set.
            unsafe { libc::sigismember(set, sig) == 1 }
        };
        assert!(!is_blocked(&blocked_now(), libc::SIGUSR1));
        let child = with_signals_blocked(|| std::thread::spawn(blocked_now));
        let child_mask = child.join().unwrap();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGQUIT] {
            assert!(
                is_blocked(&child_mask, sig),
                "signal {sig} reached the new thread"
            );
        }
        assert!(
            !is_blocked(&blocked_now(), libc::SIGUSR1),
            "the caller's mask is restored"
        );
    }

    #[test]
    fn classifies_retryable_errors() {
        let http = |status| ClientError::Http {
            status,
            body: String::new(),
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!ClientError::Auth {
            status: 401,
            body: String::new()
        }
        .is_retryable());
        assert!(ClientError::Connect {
            url: "u".into(),
            detail: "refused".into()
        }
        .is_retryable());
        assert!(ClientError::Timeout {
            url: "u".into(),
            ms: 1
        }
        .is_retryable());
        assert!(!ClientError::Statement {
            message: "x".into(),
            sql: "y".into()
        }
        .is_retryable());
        assert!(ClientError::Stream {
            message: "expired".into(),
            code: Some("STREAM_EXPIRED".into())
        }
        .is_retryable());
    }

    #[test]
    fn pipeline_url_joins_cleanly() {
        assert_eq!(
            pipeline_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/v2/pipeline"
        );
        assert_eq!(
            pipeline_url("https://db.example"),
            "https://db.example/v2/pipeline"
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "x".repeat(1000);
        let q = quote_body(body.as_bytes());
        assert_eq!(q.len(), BODY_QUOTE + 3);
    }
}
