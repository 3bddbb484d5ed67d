//! What the load benchmarks share: processes on free loopback ports, killed with their
//! children when dropped, and an MCP POST over a keep-alive client, plain or over TLS.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A process started in its own process group, which is killed whole (nginx's workers
/// outlive a killed master otherwise).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Quiet: the group is gone already when the process exited by itself.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts `cmd` and waits (30 s at most) until something listens on `port`. `quiet`: its
/// stderr is dropped too.
pub fn spawn(cmd: &mut Command, port: u16, quiet: bool) -> Result<Proc, String> {
    cmd.stdout(Stdio::null());
    if quiet {
        cmd.stderr(Stdio::null());
    }
    let child = cmd
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = p.0.try_wait() {
            return Err(format!("{cmd:?} exited: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{cmd:?}: nothing listening on {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

/// Starts `cmd` (given `--listen 127.0.0.1:0`) and waits (30 s at most) for the
/// `listening on URL` line warden and the example servers print: no port is picked that
/// another process can take first. The URL's scheme, host and port.
pub fn spawn_listening(cmd: &mut Command) -> Result<(Proc, String), String> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut p = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let url = url.split_whitespace().next().unwrap_or("");
                let _ = tx.send(
                    url.trim_end_matches('/')
                        .trim_end_matches("/mcp")
                        .to_owned(),
                );
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => Ok((p, url)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("{cmd:?} did not say where it listens within 30 s"))
        }
        // Its stdout closed without the line: it exited (its stderr says why).
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let status = p.0.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
            Err(format!("{cmd:?} exited before listening: {status}"))
        }
    }
}

/// Connections the benchmarks' clients have opened. Each client should keep the one it
/// opened first; a count that grows with the calls means a proxy's answers keep hyper's pool
/// from reusing it (it then races a new connection against the old one coming back).
pub static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// hyper's own connector, counting into [`CONNECTIONS`].
#[derive(Clone)]
pub struct Counted(pub HttpConnector);

impl tower::Service<http::Uri> for Counted {
    type Response = <HttpConnector as tower::Service<http::Uri>>::Response;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = <HttpConnector as tower::Service<http::Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        self.0.call(dst)
    }
}

pub type Http = Client<Counted, Full<Bytes>>;

/// A client over TLS (see [`TlsConnect`]).
pub type Https = Client<TlsConnect, Full<Bytes>>;

/// What a benchmark's TLS client offers: TLS 1.3 only, one cipher suite
/// (`TLS13_AES_128_GCM_SHA256`) and one key exchange (X25519), so that every server it is
/// pointed at negotiates the same thing (rustls would offer X25519MLKEM768 first, which
/// Debian 12's OpenSSL does not have); ALPN `http/1.1`; servers verified against the CA in
/// `ca` (PEM). Without `resumption`, every connection is a full handshake.
pub fn tls_client_config(ca: &Path, resumption: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::crypto::aws_lc_rs as provider;
    let mut p = provider::default_provider();
    p.cipher_suites = vec![provider::cipher_suite::TLS13_AES_128_GCM_SHA256];
    p.kx_groups = vec![provider::kx_group::X25519];
    let mut config = client_config(Arc::new(p), &[&rustls::version::TLS13], ca)?;
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// rustls's defaults on aws-lc-rs (X25519MLKEM768 first, every suite, TLS 1.2 and 1.3): to
/// see what a server picks by itself.
pub fn tls_default_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    client_config(p, rustls::ALL_VERSIONS, ca).map(Arc::new)
}

fn client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    ca: &Path,
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The name every benchmark server's certificate is for (`tests/pki.rs`), asked for in SNI
/// and verified, whatever address the URL names.
fn server_name() -> rustls_pki_types::ServerName<'static> {
    rustls_pki_types::ServerName::DnsName(
        rustls_pki_types::DnsName::try_from("localhost").expect("a DNS name"),
    )
}

/// hyper's connector with a TLS handshake on top, counting into [`CONNECTIONS`]: a TLS
/// stream where hyper expects a TCP one.
#[derive(Clone)]
pub struct TlsConnect {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

impl TlsConnect {
    pub fn new(config: Arc<rustls::ClientConfig>) -> TlsConnect {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        // The URLs say https; the TLS is ours.
        tcp.enforce_http(false);
        TlsConnect {
            tcp,
            tls: tokio_rustls::TlsConnector::from(config),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsIo>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<TlsIo>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let tcp = self.tcp.call(dst);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let stream = tls.connect(server_name(), tcp).await?;
            Ok(TokioIo::new(TlsIo(stream)))
        })
    }
}

/// A client's TLS stream, as hyper's pool takes a connection.
pub struct TlsIo(pub tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for TlsIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A client over TLS. `keep_alive`: one kept-alive connection, as [`open_session`]'s;
/// otherwise none is kept, and every request opens (and handshakes) a connection of its own.
pub fn https_client(config: Arc<rustls::ClientConfig>, keep_alive: bool) -> Https {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::from(keep_alive))
        .build(TlsConnect::new(config))
}

/// What one handshake with `addr` negotiates: the protocol version, cipher suite, key
/// exchange and ALPN protocol, for the record.
pub async fn tls_probe(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name(), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let (_, c) = tls.get_ref();
    Ok(format!(
        "{:?}, {:?}, {:?}, ALPN {}",
        c.protocol_version().ok_or("no version")?,
        c.negotiated_cipher_suite().ok_or("no suite")?.suite(),
        c.negotiated_key_exchange_group()
            .ok_or("no key exchange")?
            .name(),
        c.alpn_protocol()
            .map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned())
    ))
}

/// One MCP POST: the answer's status, the session id it carries, and its body.
pub async fn request<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Result<(u16, Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    request_with(client, url, session, bearer, body, false).await
}

/// [`request`], with `connection: close` if `close`: the client's last on its connection.
async fn request_with<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
    close: bool,
) -> Result<(u16, Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if close {
        req = req.header("connection", "close");
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    send(client, req).await
}

/// Sends a request and reads its answer to the end (so the connection goes back to the
/// pool): the status, the session id the answer carries, and the body.
async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, sid, body))
}

/// An error with its causes (hyper's own says only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// One MCP POST; the session id the answer carries, and its body. A non-2xx is an error.
pub async fn post<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Result<(Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    post_with(client, url, session, bearer, body, false).await
}

/// [`post`] as a connection's only request (`connection: close`): for a client that opens
/// a connection per call.
pub async fn post_once<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Result<(Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    post_with(client, url, session, bearer, body, true).await
}

async fn post_with<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
    close: bool,
) -> Result<(Option<String>, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (status, sid, body) = request_with(client, url, session, bearer, body, close).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok((sid, body))
}

/// Ends an MCP session (`DELETE` with its id), as a client does when it is done, so that
/// the upstream and the proxies do not carry it through the rest of a run.
pub async fn close_session<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    sid: &str,
    bearer: &str,
) -> Result<(), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let req = http::Request::delete(url)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {bearer}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, _, body) = send(client, req).await?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "closing session {sid}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// A client holding one keep-alive connection, as an agent holds one, with an MCP session
/// opened on it (`initialize`, then `notifications/initialized`): the client and the
/// session id.
pub async fn open_session(url: &str, bearer: &str, name: &str) -> Result<(Http, String), String> {
    let client = keep_alive_client();
    let sid = open_on(&client, url, bearer, name).await?;
    Ok((client, sid))
}

/// A client that keeps one connection alive (`TCP_NODELAY`, counted into [`CONNECTIONS`]),
/// as an agent does: [`open_session`]'s, and one that opens many sessions in turn.
pub fn keep_alive_client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(Counted(connector))
}

/// [`open_session`] over TLS (an `https://` URL; `config` from [`tls_client_config`]).
pub async fn open_session_tls(
    url: &str,
    bearer: &str,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<(Https, String), String> {
    let client = https_client(config, true);
    let sid = open_on(&client, url, bearer, name).await?;
    Ok((client, sid))
}

/// An MCP session opened with `client`: its id.
pub async fn open_on<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    bearer: &str,
    name: &str,
) -> Result<String, String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"0"}}}}}}"#
    );
    let (sid, _) = post(client, url, None, Some(bearer), init).await?;
    let sid = sid.ok_or("the upstream gave no session id")?;
    post(
        client,
        url,
        Some(&sid),
        Some(bearer),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
    )
    .await?;
    Ok(sid)
}
