//! TLS parts of the harness: a test CA and leaf certificates made at run time, rustls clients
//! and servers on loopback, and raw ClientHello bytes in unusual shapes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client};

use super::PATIENCE;

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM and DER.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (ECDSA P-256), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("add CA");
        roots
    }
}

impl Leaf {
    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .expect("server config");
        Arc::new(config)
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn client_config(ca: &TestCa) -> Arc<ClientConfig> {
    client_config_for(ca, rustls::DEFAULT_VERSIONS)
}

pub fn client_config_for(
    ca: &TestCa,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    Arc::new(config)
}

/// `name` as SNI; an IP address sends none.
pub fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).expect("server name")
}

/// A TLS connection through the proxy's `port`, asking for `sni`.
pub async fn tls_connect(
    port: u16,
    sni: &str,
    config: Arc<ClientConfig>,
) -> io::Result<client::TlsStream<TcpStream>> {
    tls_handshake(super::connect(port).await, sni, config).await
}

/// A TLS client handshake over an already connected `tcp`, asking for `sni`.
pub async fn tls_handshake(
    tcp: TcpStream,
    sni: &str,
    config: Arc<ClientConfig>,
) -> io::Result<client::TlsStream<TcpStream>> {
    let connecting = TlsConnector::from(config).connect(server_name(sni), tcp);
    tokio::time::timeout(PATIENCE, connecting)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "handshake")))
}

/// The leaf certificate the server presented.
pub fn presented_leaf(stream: &client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("server sent a certificate")
        .clone()
        .into_owned()
}

/// A TLS server with `leaf` that echoes the plaintext until the client's close_notify/FIN,
/// then closes. Records the SNI of every handshake.
pub async fn tls_echo_backend(leaf: &Leaf) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let acceptor = TlsAcceptor::from(leaf.server_config());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                record.lock().expect("lock").push(sni);
                echo_until_close(tls).await;
            });
        }
    });
    (port, seen)
}

/// Echoes what `stream` carries until the client closes it, then closes; a failed write ends
/// it at once.
pub async fn echo_until_close<S>(mut stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// A plain TCP backend that records every byte it receives on its first connection, answers
/// `reply` once it has `expect` bytes, and closes after the client's FIN.
pub async fn recording_backend(expect: usize, reply: &'static [u8]) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&received);
    let port = super::backend(move |mut stream| {
        let record = Arc::clone(&record);
        async move {
            let mut buf = vec![0; 4096];
            let mut replied = false;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let total = {
                            let mut all = record.lock().expect("lock");
                            all.extend_from_slice(&buf[..n]);
                            all.len()
                        };
                        if !replied && total >= expect {
                            replied = true;
                            let _ = stream.write_all(reply).await;
                        }
                    }
                }
            }
            let _ = stream.shutdown().await;
        }
    })
    .await;
    (port, received)
}

/// The TLS records a rustls client sends first (its ClientHello), for `sni` (`None`: no SNI).
pub fn client_hello(sni: Option<&str>, config: Arc<ClientConfig>) -> Vec<u8> {
    first_flight(sni, config).1
}

/// A rustls client for `sni` (`None`: no SNI) and the first flight it wants sent (its
/// ClientHello), for tests that send that flight in their own shape.
pub fn first_flight(
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> (rustls::ClientConnection, Vec<u8>) {
    let mut config = (*config).clone();
    let name = match sni {
        Some(name) => server_name(name),
        None => {
            config.enable_sni = false;
            server_name("no-sni.test")
        }
    };
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write hello");
    }
    (conn, out)
}

/// Re-frames one TLS record's payload into records of at most `max_payload` bytes each, so
/// a ClientHello spans several records.
pub fn split_records(record: &[u8], max_payload: usize) -> Vec<u8> {
    let (header, payload) = record.split_at(5);
    let mut out = Vec::new();
    for chunk in payload.chunks(max_payload) {
        out.extend_from_slice(&header[..3]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A forward route to 127.0.0.1:`target`; `domains` and `tls` are left out when null.
pub fn tls_route(
    name: &str,
    port: u16,
    domains: serde_json::Value,
    target: u16,
    tls: serde_json::Value,
) -> serde_json::Value {
    let mut route = serde_json::json!({
        "name": name,
        "match": {"ports": port},
        "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": target}}
    });
    if !domains.is_null() {
        route["match"]["domains"] = domains;
    }
    if !tls.is_null() {
        route["action"]["tls"] = tls;
    }
    route
}

/// A loopback config with `routes`, merged with `globals`.
pub fn routes_config(
    routes: Vec<serde_json::Value>,
    globals: serde_json::Value,
) -> serde_json::Value {
    super::merged(
        serde_json::json!({"bindAddress": "127.0.0.1", "routes": routes}),
        globals,
    )
}

/// Reads to the end and checks the proxy answered one fatal alert with `description`, then FIN.
pub async fn expect_alert(client: &mut TcpStream, description: u8) {
    let (answer, ending) = super::read_to_end(client).await;
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, description], "a fatal alert");
    assert_eq!(ending, super::Ending::Fin);
}

/// Drives a rustls client whose first flight was already written by hand through the rest of
/// its handshake, echoes `message` and closes. A blocking socket keeps the drive loop simple.
pub async fn finish_and_echo(
    conn: rustls::ClientConnection,
    tcp: TcpStream,
    message: &'static [u8],
) -> Vec<u8> {
    use std::io::{Read, Write};
    let sock = tcp.into_std().expect("into std");
    sock.set_nonblocking(false).expect("blocking");
    sock.set_read_timeout(Some(super::PATIENCE))
        .expect("read timeout");
    tokio::task::spawn_blocking(move || {
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("handshake after a hand-written first flight");
        }
        stream.write_all(message).expect("write");
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).expect("echo");
        stream.conn.send_close_notify();
        let _ = stream.conn.complete_io(&mut stream.sock);
        back
    })
    .await
    .expect("client task")
}

/// An HTTP backend over TLS with `leaf`, offering `alpn`, that answers like
/// `http::counting_echo_backend`, each response naming its connection's SNI in `x-sni`.
/// Records the SNI of every handshake.
pub async fn tls_echo_http_backend(
    name: &'static str,
    leaf: &Leaf,
    alpn: &[&[u8]],
) -> (
    u16,
    Arc<super::http::EchoState>,
    Arc<Mutex<Vec<Option<String>>>>,
) {
    let mut config = ServerConfig::clone(&leaf.server_config());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let state = Arc::new(super::http::EchoState::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (shared, record) = (Arc::clone(&state), Arc::clone(&seen));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared
                .accepts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, shared, record) =
                (acceptor.clone(), Arc::clone(&shared), Arc::clone(&record));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                record.lock().expect("lock").push(sni.clone());
                super::http::serve_echo_connection(tls, name, shared, sni).await;
            });
        }
    });
    (port, state, seen)
}
