//! What the load benchmarks share: processes on free loopback ports, killed with their
//! children when dropped, and an MCP POST over a keep-alive client.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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

/// One MCP POST: the answer's status, the session id it carries, and its body.
pub async fn request(
    client: &Http,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Result<(u16, Option<String>, Bytes), String> {
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
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    send(client, req).await
}

/// Sends a request and reads its answer to the end (so the connection goes back to the
/// pool): the status, the session id the answer carries, and the body.
async fn send(
    client: &Http,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), String> {
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
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

/// One MCP POST; the session id the answer carries, and its body. A non-2xx is an error.
pub async fn post(
    client: &Http,
    url: &str,
    session: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Result<(Option<String>, Bytes), String> {
    let (status, sid, body) = request(client, url, session, bearer, body).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok((sid, body))
}

/// Ends an MCP session (`DELETE` with its id), as a client does when it is done, so that
/// the upstream and the proxies do not carry it through the rest of a run.
pub async fn close_session(
    client: &Http,
    url: &str,
    sid: &str,
    bearer: &str,
) -> Result<(), String> {
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
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(Counted(connector));
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"0"}}}}}}"#
    );
    let (sid, _) = post(&client, url, None, Some(bearer), init).await?;
    let sid = sid.ok_or("the upstream gave no session id")?;
    post(
        &client,
        url,
        Some(&sid),
        Some(bearer),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
    )
    .await?;
    Ok((client, sid))
}
