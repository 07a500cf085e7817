//! Direct HTTPS (rustls with the `ring` provider: pure Rust, cross-compiles to the Pi).
//!
//! [`load`] reads `http.tls_cert` / `http.tls_key` once at start and says exactly what is
//! wrong (naming the key and the path); [`TlsListener`] plugs into `axum::serve`, so the
//! serve loop and its graceful shutdown are the same as for plain HTTP.

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in flight; beyond, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;

/// The server config for `cert_path` (PEM chain, leaf first) and `key_path` (PEM private key:
/// PKCS#8, PKCS#1 or SEC1). Every error names the config key and the file.
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "http.tls_key {}: does not fit the certificate in http.tls_cert {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pem(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{key} {}: cannot read: {e}", path.display()))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem("http.tls_cert", path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "http.tls_cert {}: not a valid PEM file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "http.tls_cert {}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----`)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_pem("http.tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
            "http.tls_key {}: no private key in it (expected PEM `-----BEGIN PRIVATE KEY-----`, RSA or EC)",
            path.display()
        ),
        e => anyhow::anyhow!("http.tls_key {}: not a valid PEM file: {e}", path.display()),
    })
}

/// TCP accept plus TLS handshake, for `axum::serve`. Handshakes run concurrently (a slow
/// client does not hold up the others) and a failed one is logged and skipped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, addr: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, addr)),
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                (stream, addr) = Listener::accept(&mut self.tcp), if room => {
                    self.start_handshake(stream, addr);
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn err(cert: &Path, key: &Path) -> String {
        format!("{:#}", load(cert, key).unwrap_err())
    }

    #[test]
    fn loads_a_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let c = write(dir.path(), "cert.pem", &cert);
        let k = write(dir.path(), "key.pem", &key);
        let config = load(&c, &k).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn each_broken_file_is_named_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let c = write(dir.path(), "cert.pem", &cert);
        let k = write(dir.path(), "key.pem", &key);
        let missing = dir.path().join("nope.pem");
        let garbage = write(dir.path(), "garbage.pem", "hello\n");
        let broken = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        );
        let other = write(dir.path(), "other.pem", &other_key);

        let e = err(&missing, &k);
        assert!(
            e.starts_with("http.tls_cert ") && e.contains("nope.pem: cannot read"),
            "{e}"
        );
        let e = err(&c, &missing);
        assert!(
            e.starts_with("http.tls_key ") && e.contains("nope.pem: cannot read"),
            "{e}"
        );
        let e = err(&garbage, &k);
        assert!(
            e.starts_with("http.tls_cert ") && e.contains("no certificate"),
            "{e}"
        );
        let e = err(&broken, &k);
        assert!(
            e.starts_with("http.tls_cert ") && e.contains("not a valid PEM"),
            "{e}"
        );
        // A key file handed as the certificate: PEM, but no certificate in it.
        let e = err(&k, &k);
        assert!(
            e.starts_with("http.tls_cert ") && e.contains("no certificate"),
            "{e}"
        );
        let e = err(&c, &c);
        assert!(
            e.starts_with("http.tls_key ") && e.contains("no private key"),
            "{e}"
        );
        let e = err(&c, &other);
        assert!(
            e.starts_with("http.tls_key ") && e.contains("does not fit the certificate"),
            "{e}"
        );
    }
}
