//! TLS toward backends when re-encrypting: the client config of a route, and the name that is
//! sent as SNI and verified.

use std::fs;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    WebPkiSupportedAlgorithms, ring, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The client config of one terminate-and-reencrypt route: TLS 1.2/1.3, no ALPN. Backends are
/// verified against `ca_file` or else the system roots, unless `reject_unauthorized` is false.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    reject_unauthorized: bool,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| e.to_string())?;
    let builder = match (reject_unauthorized, ca_file) {
        (false, _) => {
            let verifier = Arc::new(AnyCertificate(algorithms));
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
        (true, Some(path)) => builder.with_root_certificates(ca_roots(path)?),
        (true, None) => builder.with_root_certificates(system_roots()?),
    };
    Ok(Arc::new(builder.with_no_client_auth()))
}

/// The name sent as SNI and verified: the client's SNI, else the target host (a DNS name or an
/// IP address, bracketed or not).
pub(crate) fn server_name(
    client_sni: Option<&str>,
    target_host: &str,
) -> Option<ServerName<'static>> {
    let parse = |name: &str| ServerName::try_from(name.to_owned()).ok();
    let host = target_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'));
    client_sni
        .and_then(parse)
        .or_else(|| parse(host.unwrap_or(target_host)))
}

fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let at = path.display();
    let pem = fs::read(path).map_err(|e| format!("{at}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{at}: {e}"))?;
    // Lenient like the system store: bundles often carry a few certificates webpki refuses.
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    match roots.is_empty() {
        true => Err(format!("{at}: no certificate found")),
        false => Ok(roots),
    }
}

/// Read once per process: the system store does not change under a running proxy.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    let load = || {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            let why = found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(format!("no system root certificates could be loaded{why}"));
        }
        Ok(Arc::new(roots))
    };
    ROOTS.get_or_init(load).clone()
}

/// `rejectUnauthorized: false`: any chain and any name are accepted, but the handshake
/// signatures are still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::CertStore;
    use crate::tls::certs::tests::{TestCa, connect, inline, serve_once};
    use rustls::ServerConfig;
    use rustls::pki_types::IpAddr;

    fn backend(ca: &TestCa, names: &[&str]) -> Arc<ServerConfig> {
        let store = CertStore::load(vec![inline(ca.leaf(names))]).expect("load");
        store.server_config(0)
    }

    async fn handshake(
        server: &Arc<ServerConfig>,
        client: &Arc<ClientConfig>,
        sni: Option<&str>,
        host: &str,
    ) -> Result<(), String> {
        let addr = serve_once(Arc::clone(server)).await;
        let name = server_name(sni, host).expect("a valid name");
        connect(addr, Arc::clone(client), name).await.map(drop)
    }

    #[tokio::test]
    async fn verifies_the_backend_against_the_ca_file_unless_told_not_to() {
        let (ca, other_ca) = (TestCa::new(), TestCa::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
        fs::write(&ca_file, &ca.pem).expect("write");
        fs::write(&other_file, &other_ca.pem).expect("write");
        let server = backend(&ca, &["backend.test", "127.0.0.1"]);

        let trusting = client_config(Some(&ca_file), true).expect("config");
        assert!(trusting.alpn_protocols.is_empty());
        let by_sni = handshake(&server, &trusting, Some("backend.test"), "127.0.0.1").await;
        assert_eq!(by_sni, Ok(()));
        assert_eq!(
            handshake(&server, &trusting, None, "127.0.0.1").await,
            Ok(())
        );
        let wrong_name = handshake(&server, &trusting, Some("other.test"), "127.0.0.1").await;
        assert!(wrong_name.is_err_and(|e| e.contains("not valid for name")));

        let distrusting = client_config(Some(&other_file), true).expect("config");
        let untrusted = handshake(&server, &distrusting, Some("backend.test"), "x").await;
        assert!(untrusted.is_err_and(|e| e.contains("UnknownIssuer")));

        let insecure = client_config(Some(&other_file), false).expect("config");
        let accepted = handshake(&server, &insecure, Some("other.test"), "x").await;
        assert_eq!(
            accepted,
            Ok(()),
            "no verification when rejectUnauthorized is false"
        );
    }

    #[test]
    fn reports_unusable_ca_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        let error = |path: &Path| client_config(Some(path), true).expect_err("an error");
        assert!(error(&path).starts_with(&format!("{}: ", path.display())));
        fs::write(&path, "no PEM here").expect("write");
        assert_eq!(
            error(&path),
            format!("{}: no certificate found", path.display())
        );
        // Whatever this machine has, the system store either loads or says why not.
        if let Err(e) = client_config(None, true) {
            assert!(e.starts_with("no system root certificates"), "{e}");
        }
    }

    #[test]
    fn server_name_is_the_client_sni_else_the_target_host() {
        let dns = |name: &str| Some(ServerName::try_from(name.to_owned()).expect("DNS name"));
        let ip = |ip: &str| Some(ServerName::IpAddress(IpAddr::try_from(ip).expect("IP")));
        assert_eq!(server_name(Some("app.test"), "10.0.0.1"), dns("app.test"));
        assert_eq!(server_name(None, "10.0.0.1"), ip("10.0.0.1"));
        assert_eq!(server_name(None, "[::1]"), ip("::1"));
        assert_eq!(server_name(None, "::1"), ip("::1"));
        assert_eq!(
            server_name(None, "backend.internal"),
            dns("backend.internal")
        );
        assert_eq!(server_name(Some("not a name"), "b.test"), dns("b.test"));
        assert_eq!(server_name(None, "not a name"), None);
    }
}
