//! TLS on both sides of `warden serve`: the listener's certificate (`--tls-cert/--tls-key`,
//! reloaded when its files change) and the connector for `https://` upstreams.
//!
//! Both are rustls on the process's one provider (`warden_tower::tls`), TLS 1.2 and 1.3
//! only, ALPN `http/1.1` (the gateway speaks HTTP/1.1 on each side).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use warden_tower::tls::{self as wtls, ClientTls};

use crate::Error;

const ALPN: &[u8] = b"http/1.1";

/// The listener's side: a certificate that can change under open connections (each
/// connection keeps the one it was handshaken with; new ones get the newest).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    cert: Arc<Reloading>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert.cert)
            .field("key", &self.cert.key)
            .finish()
    }
}

/// The certificate served, and the files it came from.
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' bytes as last loaded: a change is a change in content, however it was
    /// made (an ACME client's rename, cert-manager's symlink swap, an editor).
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .finish()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A certificate chain and the key that goes with it, or why not.
fn certified(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let chain = wtls::certificates(cert).map_err(|e| Error::Config(e.to_string()))?;
    let der = wtls::private_key(key).map_err(|e| Error::Config(e.to_string()))?;
    CertifiedKey::from_der(chain, der, &wtls::provider()).map_err(|e| {
        Error::Config(format!(
            "{} and {}: the key does not go with the certificate ({e})",
            cert.display(),
            key.display()
        ))
    })
}

impl ServerTls {
    /// Loads the pair once; an unusable pair is an error at start.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, Error> {
        let seen = (read(cert), read(key));
        let current = certified(cert, key)?;
        let reloading = Arc::new(Reloading {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(seen),
        });
        let mut config = ServerConfig::builder_with_provider(wtls::provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(reloading.clone());
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert: reloading,
        })
    }

    /// Loads the files again if their contents changed; a pair that does not load (the
    /// certificate written, the key not yet) leaves the old one in place until it does.
    pub fn reload(&self) -> bool {
        let r = &self.cert;
        let now = (read(&r.cert), read(&r.key));
        let mut seen = r.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == now {
            return false;
        }
        match certified(&r.cert, &r.key) {
            Ok(c) => {
                r.current.store(Arc::new(c));
                *seen = now;
                tracing::info!(target: "warden::gateway", cert = %r.cert.display(), "TLS certificate reloaded; open connections keep theirs");
                metrics::counter!("warden_tls_reloads_total").increment(1);
                true
            }
            Err(e) => {
                tracing::warn!(target: "warden::gateway", error = %e, "new TLS certificate not loaded; the previous one is still served");
                false
            }
        }
    }

    /// Checks the files every `every` (and on SIGHUP, with the policy).
    pub fn watch(&self, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                this.reload();
            }
        });
    }

    /// The TLS stream for an accepted connection, or `None` (handshake failed or too slow,
    /// or the client spoke plain HTTP, which is told to use https and closed).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        deadline: Duration,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => return None,
        }
        // Every TLS connection opens with a handshake record (content type 22).
        if first[0] != 0x16 {
            refuse_plain(tcp).await;
            return None;
        }
        match tokio::time::timeout(deadline, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                metrics::counter!("warden_tls_handshake_failures_total").increment(1);
                let why = wtls::explain(&e).unwrap_or_else(|| e.to_string());
                tracing::debug!(target: "warden::gateway", error = %why, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!("warden_tls_handshake_failures_total").increment(1);
                None
            }
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// A plain-HTTP request on the TLS port: a readable 400 rather than a handshake error the
/// client shows as garbage, or a hang.
async fn refuse_plain(mut tcp: TcpStream) {
    metrics::counter!("warden_tls_plain_http_refused_total").increment(1);
    let mut sink = [0u8; 4096];
    let _ = tcp.try_read(&mut sink);
    let body = "This port speaks HTTPS: use an https:// URL.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
    // Read what else the client sends until it closes, so the answer is not lost to a reset.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The client side of an `https://` upstream: whom to trust, what to show, which name to
/// ask for (SNI) and verify.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish()
    }
}

impl Connector {
    /// `host` as the URL names it (an IPv6 literal with its brackets).
    pub fn new(host: &str, tls: &ClientTls) -> Result<Connector, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|e| format!("{host} is not a host name TLS can verify ({e})"))?;
        let config = tls.config(&[ALPN]).map_err(|e| e.to_string())?;
        Ok(Connector {
            tls: TlsConnector::from(config),
            name,
        })
    }

    pub async fn connect(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.tls.connect(self.name.clone(), tcp).await
    }
}
