//! Properties of the ClientHello reader, with `tls-parser` as the reference: random hellos read
//! the same by both; any split into records and reads gives the same hello; arbitrary and
//! mutated input never panics and is read the same whichever way it is fed.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, subsequence};
use smartproxy::tls::client_hello::{
    ClientHello, ClientHelloReader, Progress, SniffError, TlsVersion, parse_client_hello,
};
use tls_parser::{SNIType, TlsExtension, TlsMessage, TlsMessageHandshake};

fn prefixed(length_bytes: usize, data: &[u8]) -> Vec<u8> {
    let length = u32::try_from(data.len()).unwrap().to_be_bytes();
    [&length[4 - length_bytes..], data].concat()
}

/// The handshake message cut into handshake records at the offsets `cuts` (sorted, inside).
fn records(message: &[u8], cuts: &[usize]) -> Vec<u8> {
    let bounds = [&[0][..], cuts, &[message.len()]].concat();
    let record = |w: &[usize]| [&[22, 3, 1][..], &prefixed(2, &message[w[0]..w[1]])].concat();
    bounds.windows(2).flat_map(record).collect()
}

fn feed_in_chunks(bytes: &[u8], sizes: &[usize]) -> Result<Progress, SniffError> {
    let mut reader = ClientHelloReader::new();
    let mut outcome = reader.feed(&[]);
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        outcome = reader.feed(chunk);
        rest = tail;
    }
    outcome
}

/// Known versions as the reader reports them: highest first, each once.
fn known_versions(wire: impl IntoIterator<Item = u16>) -> Vec<TlsVersion> {
    let mut versions: Vec<_> = wire.into_iter().filter_map(TlsVersion::from_wire).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    versions
}

/// What tls-parser reads from one record, if it reads it all.
fn reference(record: &[u8]) -> Option<ClientHello> {
    let (_, plaintext) = tls_parser::parse_tls_plaintext(record).ok()?;
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello))) =
        plaintext.msg.first()
    else {
        return None;
    };
    let extensions = match hello.ext {
        Some(block) => match tls_parser::parse_tls_client_hello_extensions(block).ok()? {
            ([], extensions) => extensions,
            _ => return None,
        },
        None => Vec::new(),
    };
    let mut read = ClientHello {
        server_name: None,
        alpn: Vec::new(),
        versions: known_versions([hello.version.0]),
    };
    for extension in extensions {
        match extension {
            TlsExtension::SNI(names) if read.server_name.is_none() => {
                let host_name = names.iter().find(|(t, _)| *t == SNIType::HostName);
                read.server_name = host_name.map(|&(_, name)| {
                    let name = name.strip_suffix(b".").unwrap_or(name);
                    String::from_utf8_lossy(name).into_owned()
                });
            }
            TlsExtension::ALPN(protocols) => {
                read.alpn = protocols.iter().map(|p| p.to_vec()).collect();
            }
            TlsExtension::SupportedVersions(versions) => {
                read.versions = known_versions(versions.iter().map(|v| v.0));
            }
            _ => {}
        }
    }
    Some(read)
}

/// A ClientHello message and what it offers.
#[derive(Debug, Clone)]
struct Hello {
    message: Vec<u8>,
    expected: ClientHello,
}

/// Extensions other than the three read; tls-parser takes any bytes in these.
const OTHER_EXTENSIONS: [u16; 10] = [
    0x0a0a, 0x3a3a, 0xdada, 21, 41, 51, 0x1234, 0xfe0d, 0x4469, 0xff02,
];

fn version_value() -> impl Strategy<Value = u16> {
    prop_oneof![
        0x0300u16..=0x0304,
        (0u16..16).prop_map(|i| 0x0a0a + i * 0x1010),
        any::<u16>(),
    ]
}

/// server_name data: maybe an entry of another type first, the host_name, maybe a second one.
fn server_name() -> impl Strategy<Value = (Vec<u8>, String)> {
    let name = "[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}\\.?";
    (name, option::of(vec(any::<u8>(), 0..8)), any::<bool>()).prop_map(|(name, other, second)| {
        let mut list = Vec::new();
        if let Some(other) = other {
            list.extend([&[7][..], &prefixed(2, &other)].concat());
        }
        list.extend([&[0][..], &prefixed(2, name.as_bytes())].concat());
        if second {
            list.extend([&[0][..], &prefixed(2, b"second.example")].concat());
        }
        let expected = name.strip_suffix('.').unwrap_or(&name).to_string();
        (prefixed(2, &list), expected)
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    let others = subsequence(OTHER_EXTENSIONS.to_vec(), 0..=4).prop_flat_map(|types| {
        let with_data = types
            .into_iter()
            .map(|t| (Just(t), vec(any::<u8>(), 0..48)));
        with_data.collect::<Vec<_>>()
    });
    let fixed = (
        prop_oneof![Just(0x0303u16), Just(0x0301), any::<u16>()],
        vec(any::<u8>(), 0..=32),
        vec(any::<u16>(), 1..10),
        vec(any::<u8>(), 1..3),
        any::<bool>(),
    );
    let read = (
        option::of(server_name()),
        option::of(vec(vec(any::<u8>(), 1..12), 0..4)),
        option::of(vec(version_value(), 1..6)),
    );
    (fixed, read, others)
        .prop_flat_map(|(fixed, (sni, alpn, versions), others)| {
            let (legacy_version, session_id, suites, compression, no_extension_block) = fixed;
            let mut expected = ClientHello {
                server_name: None,
                alpn: Vec::new(),
                versions: known_versions([legacy_version]),
            };
            let mut extensions = others;
            if let Some((data, name)) = sni {
                extensions.push((0, data));
                expected.server_name = Some(name);
            }
            if let Some(protocols) = alpn {
                let list: Vec<u8> = protocols.iter().flat_map(|p| prefixed(1, p)).collect();
                extensions.push((16, prefixed(2, &list)));
                expected.alpn = protocols;
            }
            if let Some(wire) = versions {
                let list: Vec<u8> = wire.iter().flat_map(|v| v.to_be_bytes()).collect();
                extensions.push((43, prefixed(1, &list)));
                expected.versions = known_versions(wire);
            }
            let mut body = legacy_version.to_be_bytes().to_vec();
            body.extend([0x5e; 32]);
            body.extend(prefixed(1, &session_id));
            let suites: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
            body.extend(prefixed(2, &suites));
            body.extend(prefixed(1, &compression));
            let omit_block = no_extension_block && extensions.is_empty();
            (
                Just(body),
                Just(extensions).prop_shuffle(),
                Just(expected),
                Just(omit_block),
            )
        })
        .prop_map(|(mut body, extensions, expected, omit_block)| {
            if !omit_block {
                let block = extensions
                    .iter()
                    .flat_map(|(t, data)| [&t.to_be_bytes()[..], &prefixed(2, data)].concat());
                body.extend(prefixed(2, &block.collect::<Vec<u8>>()));
            }
            let message = [&[1][..], &prefixed(3, &body)].concat();
            Hello { message, expected }
        })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![Just(1usize), 1..80usize], 1..8)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, u8),
    Remove(Index),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        match self {
            Mutation::Flip(at, mask) => bytes[at.index(len)] ^= mask,
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
            Mutation::Extend(more) => bytes.extend(more),
            Mutation::Insert(at, byte) => bytes.insert(at.index(len), *byte),
            Mutation::Remove(at) => _ = bytes.remove(at.index(len)),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..24).prop_map(Mutation::Extend),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        1 => any::<Index>().prop_map(Mutation::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_hellos_read_as_tls_parser_reads_them(hello in hello()) {
        let record = records(&hello.message, &[]);
        prop_assert_eq!(parse_client_hello(&record), Ok(Progress::Done(hello.expected.clone())));
        prop_assert_eq!(reference(&record), Some(hello.expected));
    }

    #[test]
    fn any_split_into_records_and_reads_gives_the_same_hello(
        hello in hello(),
        cuts in vec(any::<Index>(), 0..6),
        chunks in chunk_sizes(),
        after in vec(any::<u8>(), 0..16),
    ) {
        let inner = hello.message.len() - 1;
        let mut cuts: Vec<usize> = cuts.iter().map(|at| 1 + at.index(inner)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let one_record = parse_client_hello(&records(&hello.message, &[]));
        let bytes = [records(&hello.message, &cuts), after].concat();
        prop_assert_eq!(feed_in_chunks(&bytes, &chunks), one_record);
    }

    #[test]
    fn arbitrary_bytes_read_the_same_in_one_go_or_in_chunks(
        start in prop_oneof![
            Just(vec![]),
            Just(vec![22, 3, 1]),
            Just(vec![22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]),
        ],
        bytes in vec(any::<u8>(), 0..400),
        chunks in chunk_sizes(),
    ) {
        let input = [start, bytes].concat();
        prop_assert_eq!(feed_in_chunks(&input, &chunks), parse_client_hello(&input));
    }

    #[test]
    fn mutated_hellos_never_panic_and_agree_with_tls_parser(
        hello in hello(),
        mutations in vec(mutation(), 1..4),
        chunks in chunk_sizes(),
    ) {
        let mut bytes = records(&hello.message, &[]);
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        let ours = parse_client_hello(&bytes);
        prop_assert_eq!(&feed_in_chunks(&bytes, &chunks), &ours);
        if let (Ok(Progress::Done(ours)), Some(theirs)) = (ours, reference(&bytes)) {
            if theirs.server_name.is_some() {
                prop_assert_eq!(ours.server_name, theirs.server_name);
            }
            prop_assert_eq!(ours.alpn, theirs.alpn);
            prop_assert_eq!(ours.versions, theirs.versions);
        }
    }
}
