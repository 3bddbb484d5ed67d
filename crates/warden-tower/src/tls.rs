//! TLS for the connections Warden opens itself: JWKS URLs, approval webhooks, `rediss://`,
//! and (in `warden-gateway`) https upstreams. The layer itself needs none: it sits behind
//! whatever terminates TLS for the service.
//!
//! One stack everywhere: rustls with the `aws-lc-rs` provider, rustls's own default. It
//! negotiates the post-quantum hybrid key exchange (X25519MLKEM768) first, which `ring`
//! cannot (rustls 0.23.48 deprecates its `ring` provider for that reason), and it builds
//! here with the C compiler alone (no CMake, no Go).
//! Only TLS 1.2 and 1.3 exist in rustls, so older versions are never negotiated.
//!
//! ```
//! use warden_tower::tls::ClientTls;
//!
//! // Mozilla's roots (webpki-roots), no client certificate:
//! let config = ClientTls::default().config(&[b"http/1.1"]).unwrap();
//! assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
//! ```
//!
//! There is deliberately no way to turn verification off: a private CA is trusted by naming
//! it ([`ClientTls::ca`]), never by trusting everyone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The process's one crypto provider. Also installed as rustls's process default, which is
/// what crates that build their own configs (the `redis` client) use.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            // Already installed (by an embedding application): theirs stays.
            let _ = CryptoProvider::install_default((*p).clone());
            p
        })
        .clone()
}

/// Who a client trusts and what it shows: the roots it verifies servers against, and an
/// optional certificate of its own for servers that ask for one (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// A PEM bundle of CA certificates. Given, only these are trusted (a private CA);
    /// absent, Mozilla's roots are.
    pub ca: Option<PathBuf>,
    /// A PEM certificate chain and its private key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    pub fn ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }

    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// A rustls client configuration offering `alpn`; every file problem is an error that
    /// names the file.
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(path) => {
                for cert in certificates(path)? {
                    roots.add(cert).map_err(|e| {
                        Error::Config(format!(
                            "{}: not a usable CA certificate ({e})",
                            path.display()
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|e| {
                    Error::Config(format!(
                        "{} and {}: the key does not go with the certificate ({e})",
                        cert.display(),
                        key.display()
                    ))
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The same files as the `redis` crate takes them (PEM bytes; it builds its own config
    /// on the process's provider).
    #[cfg(feature = "redis")]
    pub(crate) fn for_redis(&self) -> Result<::redis::TlsCertificates, Error> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())));
        // Read through our own loader first, so a bad file is reported the same way.
        if let Some(ca) = &self.ca {
            certificates(ca)?;
        }
        if let Some((cert, key)) = &self.identity {
            certificates(cert)?;
            private_key(key)?;
        }
        provider();
        Ok(::redis::TlsCertificates {
            client_tls: match &self.identity {
                Some((cert, key)) => Some(::redis::ClientTlsConfig {
                    client_cert: read(cert)?,
                    client_key: read(key)?,
                }),
                None => None,
            },
            root_cert: self.ca.as_deref().map(read).transpose()?,
        })
    }
}

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs (JWKS, webhooks), verifying
/// servers as `tls` says.
pub type HttpsClient<B> = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>;

pub fn https_client<B>(tls: &ClientTls) -> Result<HttpsClient<B>, Error>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    // hyper-rustls sets ALPN itself (and refuses a config that already has it).
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls.config(&[])?).clone())
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// Every certificate in a PEM file; none at all is an error.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |why: String| Error::Config(format!("{}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_error(e)))?;
    if certs.is_empty() {
        return Err(fail(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(certs)
}

/// The one private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        Error::Config(format!(
            "{}: {}",
            path.display(),
            match e {
                rustls_pki_types::pem::Error::NoItemsFound =>
                    "no PEM private key (-----BEGIN PRIVATE KEY-----) in it".into(),
                e => pem_error(e),
            }
        ))
    })
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("not valid PEM ({e})"),
    }
}

/// Why a TLS connection failed, in words, if `err` (or anything it wraps) is a TLS error:
/// what an operator reads in the log and a client in its JSON-RPC error.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(words(t));
        }
        // io::Error's `source()` skips the error it wraps, and so does an `Arc`'s (the
        // `redis` crate shares its errors that way): look inside both directly.
        let inner: Option<&(dyn std::error::Error + 'static)> =
            match e.downcast_ref::<std::io::Error>() {
                Some(io) => io.get_ref().map(|i| i as _),
                None => e
                    .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
                    .map(|arc| &**arc as _),
            };
        if let Some(found) = inner.and_then(explain) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

fn words(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "TLS: the server's certificate is signed by an unknown authority (not among the trusted roots)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS: the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS: the server's certificate is not valid yet".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "TLS: the server's certificate is not valid for the host name in the URL".into()
            }
            CertificateError::Revoked => "TLS: the server's certificate is revoked".into(),
            other => format!("TLS: the server's certificate is invalid ({other:?})"),
        },
        E::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => {
                "TLS: the server requires a client certificate".into()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => {
                format!("TLS: the server rejected the client certificate (alert {a:?})")
            }
            other => format!("TLS: the server refused the handshake (alert {other:?})"),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            format!("TLS: the server does not speak TLS on this port, or broke the protocol ({e})")
        }
        E::NoApplicationProtocol => "TLS: no common application protocol (ALPN http/1.1)".into(),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = ClientTls::default()
            .ca("/nonexistent/ca.pem")
            .config(&[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/ca.pem: "), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path =
            std::env::temp_dir().join(format!("warden-tls-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not pem at all\n").unwrap();
        let err = ClientTls::default()
            .ca(&path)
            .config(&[])
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[tokio::test]
    async fn an_https_client_builds_from_the_default_trust() {
        let client = https_client::<http_body_util::Empty<bytes::Bytes>>(&ClientTls::default());
        assert!(client.is_ok());
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let text = explain(&io).unwrap();
        assert!(text.contains("unknown authority"), "{text}");
        let plain = std::io::Error::other("connection reset");
        assert_eq!(explain(&plain), None);
        // Shared the way the `redis` crate shares its I/O errors.
        let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(io);
        assert!(explain(&shared).is_some());
    }
}
