//! The one test PKI, made by the real `openssl`: a CA, a serving certificate for 127.0.0.1 and
//! a client certificate — for nginx in front of git (source_https) and for the stand-in API
//! server, which demands the client certificate as a kind cluster does (the
//! `client-certificate-data` of kind's kubeconfig).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// PEM text of everything a kubeconfig and a server need; the same files are in the
/// directory given to [`Pki::create_in`] (`ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`).
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    crate::support::run(Command::new("openssl").current_dir(dir).args(args));
}

/// A P-256 key `<name>.key` with a certificate `<name>.pem` for `subj`: self-signed
/// (`ext: None`, the CA) or signed by `ca.pem` with the extensions `ext`.
fn issue(dir: &Path, name: &str, subj: &str, ext: Option<&str>) {
    let (key, out) = (format!("{name}.key"), format!("{name}.pem"));
    let csr = format!("{name}.csr");
    let mut req = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        subj,
    ];
    match ext {
        None => {
            req.extend(["-x509", "-days", "2", "-out", &out]);
            openssl(dir, &req);
        }
        Some(ext) => {
            req.extend(["-out", &csr]);
            openssl(dir, &req);
            let ext_file = format!("{name}.ext");
            std::fs::write(dir.join(&ext_file), ext).unwrap();
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &out,
                    "-days",
                    "2",
                    "-extfile",
                    &ext_file,
                ],
            );
        }
    }
}

impl Pki {
    pub fn new() -> Self {
        Self::create_in(tempfile::tempdir().unwrap().path())
    }

    pub fn create_in(d: &Path) -> Self {
        issue(d, "ca", "/CN=kubernetes", None);
        issue(d, "server", "/CN=kube-apiserver", Some("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"));
        issue(
            d,
            "client",
            "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
            Some("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
        );
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        Self {
            ca: read("ca.pem"),
            server_cert: read("server.pem"),
            server_key: read("server.key"),
            client_cert: read("client.pem"),
            client_key: read("client.key"),
        }
    }

    /// Server side: serve `server_cert`, require a client certificate issued by the CA.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(config)
    }
}

/// Accepts TCP connections and completes the TLS handshake; a client that fails it (no or
/// an untrusted certificate) is dropped, as the API server drops it.
pub struct TlsListener {
    pub tcp: TcpListener,
    pub acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
