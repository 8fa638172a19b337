//! Reads SNI, ALPN and the offered TLS versions from a ClientHello, without terminating.
//!
//! The reader sees the client's first bytes before the route is chosen; on passthrough routes
//! those same bytes are then forwarded untouched, so nothing here consumes or alters them.

use std::collections::HashSet;
use std::fmt;

/// A TLS protocol version as offered in a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// The name used in configs and logs (`TLSv1.2`, `TLSv1.3`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "SSLv3",
            TlsVersion::Tls10 => "TLSv1",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// The version a wire value (`0x0303`, ...) stands for; `None` for unknown values and GREASE.
    pub fn from_wire(value: u16) -> Option<TlsVersion> {
        match value {
            0x0300 => Some(TlsVersion::Ssl3),
            0x0301 => Some(TlsVersion::Tls10),
            0x0302 => Some(TlsVersion::Tls11),
            0x0303 => Some(TlsVersion::Tls12),
            0x0304 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most bytes of TLS records read while reassembling one ClientHello (headers included).
pub const MAX_CLIENT_HELLO_SIZE: usize = 64 * 1024;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// 2^14 bytes of plaintext, plus the 2048 of expansion that lenient peers tolerate.
const MAX_RECORD_LEN: usize = 16384 + 2048;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const SERVER_NAME_HOST_NAME: u8 = 0;

/// What a ClientHello tells before any key is exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The first host_name entry of server_name (ext 0), trailing dot removed, case kept. None if absent.
    pub server_name: Option<String>,
    /// ALPN protocol names (ext 16) in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// Known versions offered: supported_versions (ext 43) if present (GREASE/unknown values
    /// skipped), else the legacy_version of the ClientHello body. Highest first.
    pub versions: Vec<TlsVersion>,
}

impl ClientHello {
    pub fn highest_version(&self) -> Option<TlsVersion> {
        self.versions.iter().max().copied()
    }
}

/// Why bytes are not a readable ClientHello. Display gives a short human text for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("not a TLS handshake")]
    NotTls,
    #[error("ClientHello larger than 64 KiB")]
    TooLarge,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(ClientHello),
}

/// Incremental reader: feed the bytes in order as they arrive from the socket.
///
/// Record payloads are appended to one handshake buffer and the ClientHello body is parsed
/// once, when complete, so the total work stays linear however finely the bytes are split.
#[derive(Debug, Default)]
pub struct ClientHelloReader {
    /// Set once Done or failed: later calls repeat it.
    outcome: Option<Result<Progress, SniffError>>,
    /// The header of the next record, while still incomplete.
    record_header: Vec<u8>,
    /// Payload bytes of the current record still to come.
    record_remaining: usize,
    /// Record bytes read so far, headers included.
    record_bytes: usize,
    /// The handshake message reassembled from record payloads, header included.
    handshake: Vec<u8>,
}

impl ClientHelloReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// After Done or an error, further calls return that same outcome.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, SniffError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let outcome = self.read(bytes);
        if outcome != Ok(Progress::NeedMore) {
            self.outcome = Some(outcome.clone());
        }
        outcome
    }

    fn read(&mut self, mut input: &[u8]) -> Result<Progress, SniffError> {
        while !input.is_empty() {
            if self.record_remaining == 0 {
                input = self.read_record_header(input)?;
                continue;
            }
            let (payload, rest) = split(input, self.record_remaining);
            self.handshake.extend_from_slice(payload);
            self.record_remaining = self.record_remaining.saturating_sub(payload.len());
            input = rest;
            if let Some(hello) = self.client_hello()? {
                // Whatever follows the ClientHello is for the backend, not for us.
                return Ok(Progress::Done(hello));
            }
        }
        Ok(Progress::NeedMore)
    }

    fn read_record_header<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], SniffError> {
        let wanted = RECORD_HEADER_LEN.saturating_sub(self.record_header.len());
        let (head, rest) = split(input, wanted);
        self.record_header.extend_from_slice(head);
        // The first byte or two tell TLS from HTTP, SSLv2 and the rest; once a ClientHello
        // is under way, a record of another kind breaks it.
        let content_type = self.record_header.first();
        let major_version = self.record_header.get(1);
        if content_type.is_some_and(|&t| t != CONTENT_TYPE_HANDSHAKE)
            || major_version.is_some_and(|&major| major != 3)
        {
            return Err(match self.record_bytes {
                0 => SniffError::NotTls,
                _ => SniffError::Malformed("non-handshake record inside the ClientHello"),
            });
        }
        let Some(length) = self.record_header.get(3..RECORD_HEADER_LEN) else {
            return Ok(rest);
        };
        let length = Cursor(length).uint(2, "record length")?;
        if length == 0 || length > MAX_RECORD_LEN {
            return Err(SniffError::Malformed("bad record length"));
        }
        self.record_bytes = self.record_bytes.saturating_add(RECORD_HEADER_LEN + length);
        if self.record_bytes > MAX_CLIENT_HELLO_SIZE {
            return Err(SniffError::TooLarge);
        }
        self.record_remaining = length;
        self.record_header.clear();
        Ok(rest)
    }

    /// The ClientHello once its message is complete; its header is checked as soon as known.
    fn client_hello(&self) -> Result<Option<ClientHello>, SniffError> {
        let handshake_type = self.handshake.first();
        if handshake_type.is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) {
            return Err(SniffError::Malformed("unexpected handshake type"));
        }
        let mut message = Cursor(self.handshake.get(1..).unwrap_or_default());
        let Ok(length) = message.uint(3, "handshake length") else {
            return Ok(None);
        };
        // Even in one record this message would bring the record bytes over the limit.
        if length.saturating_add(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN) > MAX_CLIENT_HELLO_SIZE {
            return Err(SniffError::TooLarge);
        }
        match message.take(length, "ClientHello body") {
            Ok(body) => parse_body(body).map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// One-shot convenience over a buffered prefix.
pub fn parse_client_hello(prefix: &[u8]) -> Result<Progress, SniffError> {
    ClientHelloReader::new().feed(prefix)
}

fn parse_body(body: &[u8]) -> Result<ClientHello, SniffError> {
    let mut body = Cursor(body);
    let legacy_version = body.u16("truncated legacy_version")?;
    body.take(32, "truncated random")?;
    if body.prefixed(1, "truncated session_id")?.len() > 32 {
        return Err(SniffError::Malformed("session_id longer than 32 bytes"));
    }
    let cipher_suites = body.prefixed(2, "truncated cipher_suites")?;
    if cipher_suites.len() < 2 || !cipher_suites.len().is_multiple_of(2) {
        return Err(SniffError::Malformed("bad cipher_suites length"));
    }
    let compression_methods = body.prefixed(1, "truncated compression_methods")?;
    if compression_methods.is_empty() {
        return Err(SniffError::Malformed("no compression_methods"));
    }
    let mut hello = ClientHello {
        server_name: None,
        alpn: Vec::new(),
        versions: TlsVersion::from_wire(legacy_version).into_iter().collect(),
    };
    // Old clients may end the body here, with no extensions block at all.
    if body.0.is_empty() {
        return Ok(hello);
    }
    let mut extensions = only_list(body.0, 2, "bad extensions length")?;
    let mut seen = HashSet::new();
    while !extensions.0.is_empty() {
        let extension_type = extensions.u16("truncated extension")?;
        let data = extensions.prefixed(2, "truncated extension")?;
        if !seen.insert(extension_type) {
            return Err(SniffError::Malformed("duplicate extension"));
        }
        match extension_type {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            EXT_SUPPORTED_VERSIONS => hello.versions = parse_supported_versions(data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, SniffError> {
    let mut list = only_list(data, 2, "bad server_name list")?;
    let mut host_name = None;
    while !list.0.is_empty() {
        let name_type = list.take(1, "truncated server_name")?;
        let name = list.prefixed(2, "truncated server_name")?;
        if name_type == [SERVER_NAME_HOST_NAME] && host_name.is_none() {
            let name = name.strip_suffix(b".").unwrap_or(name);
            if name.is_empty() || !name.iter().all(|b| (0x21..=0x7e).contains(b)) {
                return Err(SniffError::Malformed("bad host_name"));
            }
            host_name = Some(name.iter().map(|&b| char::from(b)).collect());
        }
    }
    Ok(host_name)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, SniffError> {
    let mut list = only_list(data, 2, "bad ALPN list")?;
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        let protocol = list.prefixed(1, "truncated ALPN protocol")?;
        if protocol.is_empty() {
            return Err(SniffError::Malformed("empty ALPN protocol"));
        }
        protocols.push(protocol.to_vec());
    }
    Ok(protocols)
}

fn parse_supported_versions(data: &[u8]) -> Result<Vec<TlsVersion>, SniffError> {
    let mut list = only_list(data, 1, "bad supported_versions list")?;
    if list.0.len() < 2 || !list.0.len().is_multiple_of(2) {
        return Err(SniffError::Malformed("bad supported_versions length"));
    }
    let mut versions = Vec::new();
    while !list.0.is_empty() {
        // GREASE (0x?a?a) and versions from the future are skipped, not refused.
        versions.extend(TlsVersion::from_wire(list.u16("truncated version")?));
    }
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    Ok(versions)
}

/// `input` cut after at most `n` bytes.
fn split(input: &[u8], n: usize) -> (&[u8], &[u8]) {
    input.split_at_checked(n).unwrap_or((input, &[]))
}

/// `data` that must be exactly one list behind an `n`-byte length.
fn only_list<'a>(data: &'a [u8], n: usize, what: &'static str) -> Result<Cursor<'a>, SniffError> {
    let mut data = Cursor(data);
    let list = data.prefixed(n, what)?;
    if data.0.is_empty() {
        Ok(Cursor(list))
    } else {
        Err(SniffError::Malformed(what))
    }
}

/// Reads big-endian fields off the front of a slice; running short is `Malformed(what)`.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniffError> {
        let split = self.0.split_at_checked(n);
        let (head, rest) = split.ok_or(SniffError::Malformed(what))?;
        self.0 = rest;
        Ok(head)
    }

    /// An integer of `n` bytes; TLS lengths are at most 3 bytes, far from overflowing.
    fn uint(&mut self, n: usize, what: &'static str) -> Result<usize, SniffError> {
        let bytes = self.take(n, what)?;
        Ok(bytes
            .iter()
            .fold(0, |value, &b| value << 8 | usize::from(b)))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, SniffError> {
        match *self.take(2, what)? {
            [high, low] => Ok(u16::from_be_bytes([high, low])),
            _ => Err(SniffError::Malformed(what)),
        }
    }

    /// A field behind its `n`-byte length.
    fn prefixed(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniffError> {
        let length = self.uint(n, what)?;
        self.take(length, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(length_bytes: usize, data: &[u8]) -> Vec<u8> {
        let length = u32::try_from(data.len()).unwrap().to_be_bytes();
        [&length[4 - length_bytes..], data].concat()
    }

    fn extension(extension_type: u16, data: &[u8]) -> Vec<u8> {
        [&extension_type.to_be_bytes()[..], &prefixed(2, data)].concat()
    }

    fn sni(name: &[u8]) -> Vec<u8> {
        let entry = [vec![SERVER_NAME_HOST_NAME], prefixed(2, name)].concat();
        extension(EXT_SERVER_NAME, &prefixed(2, &entry))
    }

    /// legacy_version TLS 1.2, a random, a session id, cipher suites and compression methods.
    fn body(session_id_len: u8, suites: &[u8], compression: &[u8]) -> Vec<u8> {
        let mut out = vec![3, 3];
        out.extend([7; 32]);
        out.extend(prefixed(1, &vec![9; session_id_len.into()]));
        out.extend(prefixed(2, suites));
        out.extend(prefixed(1, compression));
        out
    }

    /// The handshake message cut into records at the offsets `cuts`.
    fn records(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let message = [&[HANDSHAKE_CLIENT_HELLO][..], &prefixed(3, body)].concat();
        let bounds = [&[0][..], cuts, &[message.len()]].concat();
        let record = |w: &[usize]| [&[22, 3, 1][..], &prefixed(2, &message[w[0]..w[1]])].concat();
        bounds.windows(2).flat_map(record).collect()
    }

    const SUITES: &[u8] = &[0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f];

    fn hello_body(extensions: &[u8]) -> Vec<u8> {
        [body(32, SUITES, &[0]), prefixed(2, extensions)].concat()
    }

    fn hello(extensions: &[u8]) -> Vec<u8> {
        records(&hello_body(extensions), &[])
    }

    fn browser_like() -> (Vec<u8>, ClientHello) {
        let extensions = [
            extension(0x3a3a, &[]),
            sni(b"Example.COM."),
            extension(EXT_ALPN, &prefixed(2, b"\x02h2\x08http/1.1")),
            extension(EXT_SUPPORTED_VERSIONS, &[6, 0x5a, 0x5a, 3, 4, 3, 3]),
            extension(51, &[0x11; 40]),
        ];
        let expected = ClientHello {
            server_name: Some("Example.COM".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
        };
        (extensions.concat(), expected)
    }

    fn done(bytes: &[u8]) -> ClientHello {
        match parse_client_hello(bytes) {
            Ok(Progress::Done(hello)) => hello,
            other => panic!("not parsed: {other:?}"),
        }
    }

    #[test]
    fn one_shot_reads_a_browser_like_hello_and_ignores_what_follows() {
        let (extensions, expected) = browser_like();
        let bytes = [hello(&extensions), vec![20, 3, 3, 0, 1, 1]].concat();
        assert_eq!(done(&bytes), expected);
        assert_eq!(expected.highest_version(), Some(TlsVersion::Tls13));
        let no_extensions = done(&records(&body(0, SUITES, &[0]), &[]));
        assert_eq!(no_extensions.versions, vec![TlsVersion::Tls12]);
        assert_eq!(no_extensions.server_name, None);
    }

    #[test]
    fn byte_per_byte_feed_reaches_the_same_result_and_keeps_it() {
        let (extensions, expected) = browser_like();
        let bytes = hello(&extensions);
        let mut reader = ClientHelloReader::new();
        let (last, init) = bytes.split_last().unwrap();
        for byte in init.chunks(1) {
            assert_eq!(reader.feed(byte), Ok(Progress::NeedMore));
        }
        assert_eq!(reader.feed(&[*last]), Ok(Progress::Done(expected.clone())));
        assert_eq!(reader.feed(b"more"), Ok(Progress::Done(expected)));
    }

    #[test]
    fn a_hello_split_across_three_records_is_reassembled() {
        let (extensions, expected) = browser_like();
        let bytes = records(&hello_body(&extensions), &[2, 60]);
        assert_eq!(done(&bytes), expected);
        let mut reader = ClientHelloReader::new();
        bytes.chunks(7).for_each(|chunk| _ = reader.feed(chunk));
        assert_eq!(reader.feed(&[]), Ok(Progress::Done(expected)));
    }

    #[test]
    fn grease_and_unknown_versions_are_skipped() {
        let versions = |list: &[u8]| done(&hello(&extension(43, list))).versions;
        let offered = versions(&[8, 0x1a, 0x1a, 3, 3, 0x7f, 0x1c, 3, 4]);
        assert_eq!(offered, vec![TlsVersion::Tls13, TlsVersion::Tls12]);
        assert_eq!(versions(&[2, 0xfa, 0xfa]), vec![]);
    }

    #[test]
    fn other_protocols_are_not_tls_from_the_first_bytes() {
        let mut reader = ClientHelloReader::new();
        assert_eq!(reader.feed(b"G"), Err(SniffError::NotTls));
        assert_eq!(reader.feed(b"ET / HTTP/1.1\r\n"), Err(SniffError::NotTls));
        assert_eq!(parse_client_hello(b"\x16\x02"), Err(SniffError::NotTls));
        // SSLv2-compatible hello: a two-byte length with the high bit set.
        let sslv2 = parse_client_hello(b"\x80\x2e\x01\x03\x01");
        assert_eq!(sslv2, Err(SniffError::NotTls));
        assert_eq!(parse_client_hello(b"\x16\x03"), Ok(Progress::NeedMore));
        assert_eq!(SniffError::NotTls.to_string(), "not a TLS handshake");
    }

    #[test]
    fn oversized_hellos_are_refused_as_soon_as_the_length_is_known() {
        let header = [22, 3, 1, 0x40, 0, HANDSHAKE_CLIENT_HELLO, 0x01, 0, 0];
        assert_eq!(parse_client_hello(&header), Err(SniffError::TooLarge));
        // Many tiny records: their headers count too.
        let body = hello_body(&extension(21, &[0; 20_000]));
        let cuts: Vec<usize> = (1..body.len()).collect();
        let tiny_records = parse_client_hello(&records(&body, &cuts));
        assert_eq!(tiny_records, Err(SniffError::TooLarge));
    }

    #[test]
    fn each_broken_part_is_malformed() {
        let good = body(32, SUITES, &[0]);
        let mut application_data = records(&good, &[10]);
        application_data[15] = 23;
        let mut sni_name_past_list = sni(b"a.example");
        sni_name_past_list[5] -= 1;
        #[rustfmt::skip]
        let cases = [
            ("bad record length", vec![22, 3, 1, 0, 0]),
            ("bad record length", vec![22, 3, 1, 0x48, 0x01]),
            ("non-handshake record inside the ClientHello", application_data),
            ("unexpected handshake type", vec![22, 3, 3, 0, 1, 2]),
            ("truncated random", records(&good[..20], &[])),
            ("session_id longer than 32 bytes", records(&body(33, SUITES, &[0]), &[])),
            ("bad cipher_suites length", records(&body(0, &SUITES[..3], &[0]), &[])),
            ("bad cipher_suites length", records(&body(0, &[], &[0]), &[])),
            ("no compression_methods", records(&body(0, SUITES, &[]), &[])),
            ("bad extensions length", records(&[&good[..], &[0, 9, 0, 0]].concat(), &[])),
            ("bad extensions length", records(&[&good[..], &[0, 0, 0]].concat(), &[])),
            ("truncated extension", hello(&[0, 51, 0, 9, 1])),
            ("duplicate extension", hello(&[sni(b"a"), extension(51, &[]), sni(b"b")].concat())),
            ("bad server_name list", hello(&extension(0, &[0, 4, 0, 0, 1, b'a', 0]))),
            ("bad server_name list", hello(&sni_name_past_list)),
            ("bad host_name", hello(&sni(b""))),
            ("bad host_name", hello(&sni(b"."))),
            ("bad host_name", hello(&sni(b"a b"))),
            ("bad host_name", hello(&sni("é.example".as_bytes()))),
            ("empty ALPN protocol", hello(&extension(16, &prefixed(2, b"\x02h2\x00")))),
            ("bad ALPN list", hello(&extension(16, &[0, 4, 2, b'h', b'2']))),
            ("bad supported_versions length", hello(&extension(43, &[3, 3, 4, 3]))),
            ("bad supported_versions length", hello(&extension(43, &[0]))),
            ("bad supported_versions list", hello(&extension(43, &[4, 3, 4]))),
        ];
        for (expected, bytes) in cases {
            let outcome = parse_client_hello(&bytes);
            assert_eq!(outcome, Err(SniffError::Malformed(expected)), "{bytes:?}");
        }
        let text = SniffError::Malformed("duplicate extension").to_string();
        assert_eq!(text, "malformed ClientHello: duplicate extension");
    }
}
