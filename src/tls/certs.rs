//! Certificates served when terminating TLS: loading PEM sources, choosing one by SNI, and
//! swapping them when their files change.

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::CertificateSource;

/// How often certificate files are checked for changes.
pub const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A certificate chain with its key, and the DNS names it serves (lowercase).
#[derive(Clone)]
pub(crate) struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
}

/// Reads one source: the PEM chain (leaf first) and its private key, which must match the leaf.
pub(crate) fn load_source(source: &CertificateSource) -> Result<LoadedCert, String> {
    match source {
        CertificateSource::Files {
            cert_file,
            key_file,
        } => {
            let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
            let (cert, key) = (read(cert_file)?, read(key_file)?);
            parse(&cert, &key, &cert_file.display(), &key_file.display())
        }
        CertificateSource::Inline { cert, key } => {
            let (cert, key) = (cert.as_bytes(), key.as_bytes());
            parse(cert, key, &"inline certificate", &"inline key")
        }
    }
}

/// `cert_at` and `key_at` name where each part came from, for error messages.
fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_at: &dyn Display,
    key_at: &dyn Display,
) -> Result<LoadedCert, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_at}: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{cert_at}: no certificate found"))?;
    let names = dns_names(leaf).map_err(|e| format!("{cert_at}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{key_at}: no private key found"),
        e => format!("{key_at}: {e}"),
    })?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{key_at}: unusable private key: {e}"))?;
    let key = CertifiedKey::new(chain, signer);
    match key.keys_match() {
        // Unknown: the key type cannot expose its public half; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "{key_at}: key does not match the certificate in {cert_at}"
            ));
        }
        Err(e) => return Err(format!("{cert_at}: {e}")),
    }
    let key = Arc::new(key);
    Ok(LoadedCert { key, names })
}

/// SAN dNSName entries; the subject CN only when the certificate has no SAN extension at all.
fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| format!("unreadable certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName: {e}"))?;
    let names: Vec<&str> = match san {
        Some(san) => (san.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(*dns),
                _ => None,
            })
            .collect(),
        None => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .collect(),
    };
    Ok(names.into_iter().map(normalize).collect())
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The certificates in force, looked up by name. Replaced whole on reload, never mutated.
struct Index {
    certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, usize>,
}

impl Index {
    fn new(certs: Vec<LoadedCert>) -> Index {
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                // Ascending order: the lowest index claiming a name keeps it.
                map.entry(key.to_owned()).or_insert(i);
            }
        }
        Index {
            certs,
            exact,
            wildcard,
        }
    }

    /// The route's own certificate (`default`) when it covers the name; else the first
    /// certificate with the exact name, then one whose wildcard covers it, then `default`.
    fn pick(&self, sni: Option<&str>, default: usize) -> Option<Arc<CertifiedKey>> {
        let own = self.certs.get(default)?;
        let found = sni.map(normalize).and_then(|name| {
            if covers(own, &name) {
                return Some(default);
            }
            let wildcard = || parent_of(&name).and_then(|parent| self.wildcard.get(parent));
            self.exact.get(&name).or_else(wildcard).copied()
        });
        let cert = self.certs.get(found.unwrap_or(default))?;
        Some(Arc::clone(&cert.key))
    }
}

/// What a wildcard must cover: `a.example.com` → `example.com` (one label only, RFC 6125).
fn parent_of(name: &str) -> Option<&str> {
    match name.split_once('.') {
        Some((label, parent)) if !label.is_empty() => Some(parent),
        _ => None,
    }
}

/// Whether `cert` serves `name` (lowercase), exactly or through a wildcard.
fn covers(cert: &LoadedCert, name: &str) -> bool {
    cert.names.iter().any(|n| match n.strip_prefix("*.") {
        Some(parent) => parent_of(name) == Some(parent),
        None => n == name,
    })
}

/// (modified, size, inode): a replaced file differs in at least one of these.
type FileStamp = (Option<SystemTime>, u64, u64);

/// Follows symlinks, so a swapped link target counts as a change. `None`: unreadable.
fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

fn stamp_source(source: &CertificateSource) -> [Option<FileStamp>; 2] {
    match source {
        CertificateSource::Files {
            cert_file,
            key_file,
        } => [stamp(cert_file), stamp(key_file)],
        CertificateSource::Inline { .. } => [None, None],
    }
}

/// Every certificate of the config, indexed by name, swappable at runtime.
pub(crate) struct CertStore {
    sources: Vec<CertificateSource>,
    /// Handshakes only clone the Arc; a reload builds the next index first, then swaps.
    index: RwLock<Arc<Index>>,
    /// File stamps as of the last read, per source. Also serializes reloads.
    stamps: Mutex<Vec<[Option<FileStamp>; 2]>>,
}

impl CertStore {
    /// Loads each source (index = position). Err: (index, message) of the first failure.
    pub fn load(sources: Vec<CertificateSource>) -> Result<Arc<CertStore>, (usize, String)> {
        let mut certs = Vec::with_capacity(sources.len());
        let mut stamps = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            // Stamped before reading: a write racing the read shows up on the next poll.
            stamps.push(stamp_source(source));
            certs.push(load_source(source).map_err(|e| (i, e))?);
        }
        Ok(Arc::new(CertStore {
            sources,
            index: RwLock::new(Arc::new(Index::new(certs))),
            stamps: Mutex::new(stamps),
        }))
    }

    fn current(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A server config (TLS 1.2 and 1.3, no client auth, no ALPN, session resumption on)
    /// whose certificate is chosen per handshake by SNI, falling back to the one at `default`.
    pub fn server_config(self: &Arc<Self>, default: usize) -> Arc<ServerConfig> {
        let resolver = Arc::new(Resolver {
            store: Arc::clone(self),
            default,
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        // Per config, so a ticket issued for one route is never accepted by another.
        match ring::Ticketer::new() {
            Ok(ticketer) => config.ticketer = ticketer,
            Err(e) => tracing::warn!(error = %e, "TLS session tickets unavailable"),
        }
        Arc::new(config)
    }

    /// Re-reads file sources whose files changed since last read, or all of them when `force`.
    /// A source that fails keeps serving its previous certificate. Returns how many changed.
    pub fn reload(&self, force: bool) -> usize {
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        let mut replaced = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let CertificateSource::Files {
                cert_file,
                key_file,
            } = source
            else {
                continue;
            };
            let now = stamp_source(source);
            if !force && stamps[i] == now {
                continue;
            }
            // Recorded even on failure: a broken file is reported once, not every poll.
            stamps[i] = now;
            let (cert_file, key_file) = (cert_file.display(), key_file.display());
            match load_source(source) {
                Ok(cert) => {
                    tracing::info!(%cert_file, %key_file, names = ?cert.names, "certificate reloaded");
                    replaced.push((i, cert));
                }
                Err(error) => tracing::warn!(
                    %cert_file, %key_file, %error,
                    "certificate reload failed; still serving the previous one"
                ),
            }
        }
        if replaced.is_empty() {
            return 0;
        }
        let count = replaced.len();
        let mut certs = self.current().certs.clone();
        for (i, cert) in replaced {
            certs[i] = cert;
        }
        let next = Arc::new(Index::new(certs));
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = next;
        count
    }

    /// Polls for file changes every CERT_WATCH_INTERVAL until `stop` is cancelled.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        // Stat-polling, not inotify: inotify misses symlink swaps (mounted secrets) and
        // editors that save by renaming, and a few stat calls every 2 s cost nothing.
        let mut tick = tokio::time::interval(CERT_WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let store = Arc::clone(&self);
            // File reads block; keep them off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || store.reload(false)).await {
                tracing::warn!(error = %e, "certificate reload aborted");
            }
        }
    }
}

struct Resolver {
    store: Arc<CertStore>,
    default: usize,
}

// By hand: the store holds inline private keys, which must never reach a log.
impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.current().pick(hello.server_name(), self.default)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::ServerName;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::{TcpListener, TcpStream};

    /// A test CA issuing ECDSA P-256 leaves.
    pub(crate) struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pub pem: String,
    }

    impl TestCa {
        pub fn new() -> TestCa {
            static SERIAL: AtomicUsize = AtomicUsize::new(0);
            let mut params = CertificateParams::new(Vec::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            // Distinct subjects, so one CA is never taken for another's issuer.
            let n = SERIAL.fetch_add(1, Ordering::Relaxed);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("Test CA {n}"));
            let key = KeyPair::generate().expect("key");
            let pem = params.self_signed(&key).expect("CA").pem();
            let issuer = Issuer::new(params, key);
            TestCa { issuer, pem }
        }

        /// (certificate PEM, PKCS#8 key PEM) for a leaf with these SAN names.
        pub fn leaf(&self, names: &[&str]) -> (String, String) {
            let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
            self.sign(CertificateParams::new(names).expect("names"))
        }

        fn sign(&self, params: CertificateParams) -> (String, String) {
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("leaf");
            (cert.pem(), key.serialize_pem())
        }

        pub fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
            let mut roots = RootCertStore::empty();
            let ca = CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM");
            roots.add(ca).expect("root");
            let builder = ClientConfig::builder_with_provider(provider());
            let builder = builder.with_protocol_versions(versions).expect("versions");
            Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
        }
    }

    pub(crate) fn inline((cert, key): (String, String)) -> CertificateSource {
        CertificateSource::Inline { cert, key }
    }

    /// Accepts one TLS connection with `config`.
    pub(crate) async fn serve_once(config: Arc<ServerConfig>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await;
        });
        addr
    }

    /// Handshakes; returns the names of the leaf the server presented, and the version.
    pub(crate) async fn connect(
        addr: SocketAddr,
        client: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<(Vec<String>, ProtocolVersion), String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connect = tokio_rustls::TlsConnector::from(client).connect(name, tcp);
        let tls = connect.await.map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        let version = conn.protocol_version().expect("negotiated");
        Ok((dns_names(leaf.expect("a certificate"))?, version))
    }

    async fn seen(config: &Arc<ServerConfig>, ca: &TestCa, name: &str, sni: bool) -> Vec<String> {
        let mut client = ClientConfig::clone(&ca.client(&[&TLS13]));
        client.enable_sni = sni;
        let name = ServerName::try_from(name.to_owned()).expect("name");
        let addr = serve_once(Arc::clone(config)).await;
        let seen = connect(addr, Arc::new(client), name).await;
        seen.expect("handshake").0
    }

    #[tokio::test]
    async fn picks_exact_then_wildcard_then_default() {
        let ca = TestCa::new();
        let names = [
            "default.test",
            "*.example.com",
            "a.example.com",
            "A.example.com",
        ];
        let store = CertStore::load(names.map(|n| inline(ca.leaf(&[n]))).to_vec()).expect("load");
        let config = store.server_config(0);
        for (name, sni, expected) in [
            ("a.example.com", true, "a.example.com"),
            ("b.example.com", true, "*.example.com"),
            ("default.test", false, "default.test"),
        ] {
            assert_eq!(seen(&config, &ca, name, sni).await, [expected], "{name}");
        }

        let index = store.current();
        let picked = |sni: Option<&str>, default: usize| {
            let key = index.pick(sni, default)?;
            index.certs.iter().position(|c| Arc::ptr_eq(&c.key, &key))
        };
        for (sni, default, expected) in [
            (Some("A.Example.COM"), 0, Some(2)), // case-insensitive; the lowest index wins
            (Some("x.example.com"), 0, Some(1)),
            (Some("a.b.example.com"), 0, Some(0)), // a wildcard covers exactly one label
            (Some("example.com"), 3, Some(3)),
            (None, 1, Some(1)),
            (Some("nothing.test"), 9, None),
        ] {
            assert_eq!(picked(sni, default), expected, "{sni:?}");
        }
    }

    #[tokio::test]
    async fn serves_tls12_and_tls13_with_resumption_and_no_alpn() {
        let ca = TestCa::new();
        let store = CertStore::load(vec![inline(ca.leaf(&["site.test"]))]).expect("load");
        let config = store.server_config(0);
        assert!(config.ticketer.enabled() && config.alpn_protocols.is_empty());
        let versions = [
            (&TLS12, ProtocolVersion::TLSv1_2),
            (&TLS13, ProtocolVersion::TLSv1_3),
        ];
        for (version, expected) in versions {
            let addr = serve_once(Arc::clone(&config)).await;
            let name = ServerName::try_from("site.test").expect("name");
            let seen = connect(addr, ca.client(&[version]), name).await;
            assert_eq!(seen, Ok((vec!["site.test".to_owned()], expected)));
        }
    }

    #[test]
    fn reports_unusable_sources_by_file() {
        let ca = TestCa::new();
        let error = |source: &CertificateSource| load_source(source).err().expect("an error");
        let ((cert, _), (_, other_key)) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test"]));
        assert_eq!(
            error(&inline((cert.clone(), other_key))),
            "inline key: key does not match the certificate in inline certificate"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (cert_at, key_at) = (cert_file.display(), key_file.display());
        let files = CertificateSource::Files {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        };
        fs::write(&cert_file, "not PEM").expect("write");
        assert!(
            error(&files).starts_with(&format!("{key_at}: ")),
            "missing key file"
        );
        fs::write(&key_file, "").expect("write");
        assert_eq!(error(&files), format!("{cert_at}: no certificate found"));
        fs::write(&cert_file, cert).expect("write");
        assert_eq!(error(&files), format!("{key_at}: no private key found"));

        let sources = vec![inline(ca.leaf(&["ok.test"])), files];
        assert_eq!(CertStore::load(sources).err().map(|(i, _)| i), Some(1));
    }

    #[test]
    fn loads_pkcs8_and_sec1_keys_and_falls_back_to_the_cn() {
        let ca = TestCa::new();
        let (cert, pkcs8) = ca.leaf(&["A.Test"]);
        assert!(pkcs8.contains("BEGIN PRIVATE KEY"));
        let loaded = load_source(&inline((cert.clone(), pkcs8.clone()))).expect("PKCS#8");
        assert_eq!(loaded.names, ["a.test"]);

        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (SEC1) }
        let der = PrivateKeyDer::from_pem_slice(pkcs8.as_bytes()).expect("PEM");
        let (_, info) = x509_parser::der_parser::parse_der(der.secret_der()).expect("DER");
        let sec1 = info.as_sequence().expect("sequence")[2]
            .as_slice()
            .expect("octets");
        let (begin, end) = (
            "-----BEGIN EC PRIVATE KEY-----",
            "-----END EC PRIVATE KEY-----",
        );
        let sec1 = format!("{begin}\n{}\n{end}\n", base64(sec1));
        let parsed = PrivateKeyDer::from_pem_slice(sec1.as_bytes());
        assert!(matches!(parsed, Ok(PrivateKeyDer::Sec1(_))));
        load_source(&inline((cert, sec1))).expect("SEC1");

        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "CN.test");
        let loaded = load_source(&inline(ca.sign(params))).expect("CN only");
        assert_eq!(loaded.names, ["cn.test"]);
    }

    fn base64(bytes: &[u8]) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = (chunk.iter().zip([16, 8, 0])).fold(0u32, |n, (b, s)| n | u32::from(*b) << s);
            for i in 0..=chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
            }
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
        out
    }

    /// Replaces a file the way deploy tools do: write aside, then rename over.
    fn replace(path: &Path, contents: &str) {
        let aside = path.with_extension("new");
        fs::write(&aside, contents).expect("write");
        fs::rename(&aside, path).expect("rename");
    }

    #[tokio::test]
    async fn reloads_changed_files_and_keeps_serving_on_failure() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let put = |version: &str| {
            let (cert, key) = ca.leaf(&["site.test", version]);
            replace(&cert_file, &cert);
            replace(&key_file, &key);
        };
        put("v1.test");
        let files = CertificateSource::Files {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        };
        let store = CertStore::load(vec![files, inline(ca.leaf(&["inline.test"]))]).expect("load");
        let config = store.server_config(0);
        let check = async |reloaded: usize, version: &str| {
            assert_eq!(store.reload(false), reloaded, "{version}");
            assert_eq!(seen(&config, &ca, "site.test", true).await[1], version);
        };
        check(0, "v1.test").await;
        put("v2.test");
        check(1, "v2.test").await;
        check(0, "v2.test").await;
        replace(&cert_file, "garbage");
        check(0, "v2.test").await;
        put("v3.test");
        check(1, "v3.test").await;
        assert_eq!(
            store.reload(true),
            1,
            "forced: the unchanged file source, not the inline one"
        );

        let stop = CancellationToken::new();
        let watcher = tokio::spawn(Arc::clone(&store).watch(stop.clone()));
        put("v4.test");
        let deadline = tokio::time::Instant::now() + CERT_WATCH_INTERVAL * 3;
        while store.current().certs[0].names[1] != "v4.test" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watch missed the change"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        watcher.await.expect("watch stops when cancelled");
    }
}
