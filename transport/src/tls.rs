//! TLS between every party of the gRPC API, with rustls (ring provider): [`TlsConfig`] holds one
//! party's certificate, key and the CA it trusts, and makes both ends of a connection from them.
//!
//! It is mutual TLS for everyone: the server presents its certificate and asks every client
//! (another node or an application) for one signed by the CA; a client presents its own and
//! verifies the server's against the same CA, for the host it dialled (or for one fixed name, see
//! [`TlsConfig::with_server_name`]). A node uses one [`TlsConfig`] for its server and its peer
//! calls; a client uses its own files signed by the same CA.
//!
//! The server side (`tls_incoming`) runs handshakes on tasks of their own, each bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client never holds up the accept loop.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest a server waits for a client to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol both ends agree on through ALPN (gRPC runs over HTTP/2).
const ALPN_H2: &[u8] = b"h2";

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("the {what} is not usable PEM: {reason}")]
    Pem {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("invalid TLS settings: {0}")]
    Invalid(String),
    /// Some of the certificate, key and CA were given, not all three.
    #[error("TLS needs a certificate, its key and a CA together; missing: {0}")]
    Incomplete(String),
}

/// One party's TLS settings: its certificate chain and key, and the CA its peers must chain to.
/// Cheap to clone (the rustls configs are shared).
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    /// The name every server's certificate is verified for, instead of the dialled host.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.inner.server_name)
            .finish_non_exhaustive()
    }
}

/// Two configs are equal when they are the same loaded config (clones of one another).
impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for TlsConfig {}

impl TlsConfig {
    /// Settings from PEM text: `cert_chain` (this party's certificate, then any intermediates),
    /// `key` (its private key: PKCS#8, PKCS#1 or SEC1) and `ca` (one or more CA certificates
    /// peers' certificates must chain to).
    pub fn from_pem(cert_chain: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates("certificate", cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for cert in certificates("CA certificate", ca)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Invalid(format!("CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = server_config(&provider, &roots, chain.clone(), key.clone_key())?;
        let client = client_config(&provider, &roots, chain, key)?;
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                server: Arc::new(server),
                client: Arc::new(client),
                server_name: None,
            }),
        })
    }

    /// Settings from PEM files (see [`TlsConfig::from_pem`]).
    pub fn from_pem_files(cert_chain: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(
            &read("certificate", cert_chain)?,
            &read("private key", key)?,
            &read("CA certificate", ca)?,
        )
    }

    /// Settings from PEM files when all three are given, `None` when none is (plain text), an
    /// error when only some are: what a command line's `--tls-cert/--tls-key/--tls-ca` mean.
    pub fn from_optional_files(
        cert_chain: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert_chain, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert_chain), Some(key), Some(ca)) => {
                Self::from_pem_files(cert_chain, key, ca).map(Some)
            }
            _ => {
                let missing: Vec<&str> = [("certificate", cert_chain), ("key", key), ("CA", ca)]
                    .into_iter()
                    .filter(|(_, path)| path.is_none())
                    .map(|(what, _)| what)
                    .collect();
                Err(TlsError::Incomplete(missing.join(", ")))
            }
        }
    }

    /// The same settings, verifying every server's certificate for `name` instead of the host
    /// part of the address dialled (for clusters whose nodes share one certificate name).
    pub fn with_server_name(self, name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::Invalid(format!("server name {name:?}: {e}")))?;
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                server: self.inner.server.clone(),
                client: self.inner.client.clone(),
                server_name: Some(server_name),
            }),
        })
    }

    /// The rustls settings of the server side (client certificates required).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.inner.server.clone()
    }

    /// The rustls settings of the client side (this party's certificate presented).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.inner.client.clone()
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.server.clone())
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.inner.client.clone())
    }

    /// The name to verify the server at `addr` (`host:port`) for.
    pub(crate) fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.inner.server_name {
            return Ok(name.clone());
        }
        let uri: http::Uri = format!("https://{addr}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let host = uri.host().ok_or_else(|| format!("no host in {addr:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} cannot be a TLS server name: {e}"))
    }
}

/// Every certificate of a PEM text (at least one).
fn certificates(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let invalid = |e: &dyn fmt::Display| TlsError::Invalid(e.to_string());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, TlsError> {
    let invalid = |e: &dyn fmt::Display| TlsError::Invalid(e.to_string());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(&e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The TLS streams of the connections `incoming` yields: each handshake runs on its own task,
/// within [`HANDSHAKE_TIMEOUT`]; a failed one is logged and its connection dropped. Errors of
/// `incoming` itself pass through. Dropping the stream aborts the handshakes in progress.
pub(crate) fn tls_incoming<S, IO, E>(
    incoming: S,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = Result<tokio_rustls::server::TlsStream<IO>, E>>
where
    S: Stream<Item = Result<IO, E>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    E: Send + 'static,
{
    let state = Accepting {
        incoming: Box::pin(incoming),
        ended: false,
        handshakes: JoinSet::new(),
        acceptor,
    };
    futures::stream::unfold(state, |mut state| async move {
        let next = state.next().await;
        next.map(|item| (item, state))
    })
}

/// The state of [`tls_incoming`].
struct Accepting<S, IO> {
    incoming: std::pin::Pin<Box<S>>,
    /// Whether `incoming` ended (then only the handshakes under way are left to finish).
    ended: bool,
    handshakes: JoinSet<Result<tokio_rustls::server::TlsStream<IO>, String>>,
    acceptor: TlsAcceptor,
}

impl<S, IO, E> Accepting<S, IO>
where
    S: Stream<Item = Result<IO, E>>,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// The next established TLS stream (or error of `incoming`); `None` once `incoming` ended
    /// and every handshake finished.
    async fn next(&mut self) -> Option<Result<tokio_rustls::server::TlsStream<IO>, E>> {
        loop {
            if self.ended && self.handshakes.is_empty() {
                return None;
            }
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Ok(stream)) => return Some(Ok(stream)),
                        Ok(Err(reason)) => {
                            tracing::debug!(error = %reason, "TLS handshake failed; connection closed");
                        }
                        Err(err) => tracing::warn!(error = %err, "TLS handshake task failed"),
                    }
                }
                accepted = self.incoming.next(), if !self.ended => match accepted {
                    Some(Ok(io)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                                Ok(Ok(stream)) => Ok(stream),
                                Ok(Err(err)) => Err(err.to_string()),
                                Err(_) => Err(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
                            }
                        });
                    }
                    Some(Err(err)) => return Some(Err(err)),
                    None => self.ended = true,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a certificate for `localhost` and 127.0.0.1 it signed with its key, as PEM.
    fn ca_and_node() -> (String, String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    #[test]
    fn refuses_what_is_not_pem() {
        let err = TlsConfig::from_pem(b"nope", b"nope", b"nope").unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
        let (ca, cert, _) = ca_and_node();
        let err = TlsConfig::from_pem(cert.as_bytes(), b"nope", ca.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );
        let missing = TlsConfig::from_pem_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
            Path::new("/nonexistent/ca.pem"),
        )
        .unwrap_err();
        assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
        assert!(matches!(
            TlsConfig::from_optional_files(None, None, None),
            Ok(None)
        ));
        let partial =
            TlsConfig::from_optional_files(Some(Path::new("c.pem")), None, None).unwrap_err();
        assert_eq!(
            partial.to_string(),
            "TLS needs a certificate, its key and a CA together; missing: key, CA"
        );
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let (ca, cert, key) = ca_and_node();
        let ok = TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), ca.as_bytes());
        assert!(ok.is_ok(), "{:?}", ok.err());
        let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let err =
            TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), ca.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::Invalid(_)), "{err}");
    }

    #[test]
    fn server_names_come_from_the_dialled_host_unless_fixed() {
        let (ca, cert, key) = ca_and_node();
        let tls = TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), ca.as_bytes()).unwrap();
        let name = |addr: &str| tls.server_name_for(addr).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:7001").unwrap(), "127.0.0.1");
        assert_eq!(name("[::1]:7001").unwrap(), "::1");
        assert_eq!(name("node-2.cache.svc:7001").unwrap(), "node-2.cache.svc");
        let fixed = tls.clone().with_server_name("lcache.internal").unwrap();
        assert_eq!(
            fixed.server_name_for("10.1.2.3:7001").unwrap().to_str(),
            "lcache.internal"
        );
        assert_eq!(tls, tls.clone());
        assert_ne!(tls, fixed);
    }
}
