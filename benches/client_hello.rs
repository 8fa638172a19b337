//! Reading a browser-like ClientHello: in one buffer, as three records fed one by one, and one
//! byte per read (the slowest a client can make the proxy work).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smartproxy::tls::client_hello::{ClientHelloReader, Progress, parse_client_hello};

/// The size Chrome pads its ClientHello message to.
const MESSAGE_LEN: usize = 512;

fn prefixed(length_bytes: usize, data: &[u8]) -> Vec<u8> {
    let length = u32::try_from(data.len()).unwrap().to_be_bytes();
    [&length[4 - length_bytes..], data].concat()
}

fn extension(extension_type: u16, data: &[u8]) -> Vec<u8> {
    [&extension_type.to_be_bytes()[..], &prefixed(2, data)].concat()
}

/// A handshake message shaped like a current browser's ClientHello, padded to MESSAGE_LEN.
fn browser_hello() -> Vec<u8> {
    let host_name = [&[0][..], &prefixed(2, b"www.example.com")].concat();
    let alpn = [prefixed(1, b"h2"), prefixed(1, b"http/1.1")].concat();
    let x25519_share = [&[0, 29][..], &prefixed(2, &[0x42; 32])].concat();
    let grease_share = [0x6a, 0x6a, 0, 1, 0];
    let extensions = [
        extension(0x6a6a, &[]),
        extension(0, &prefixed(2, &host_name)),
        extension(23, &[]),
        extension(0xff01, &[0]),
        extension(10, &prefixed(2, &[0x6a, 0x6a, 0, 29, 0, 23, 0, 24])),
        extension(11, &[1, 0]),
        extension(35, &[]),
        extension(16, &prefixed(2, &alpn)),
        extension(5, &[1, 0, 0, 0, 0]),
        extension(
            13,
            &prefixed(2, &[4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1]),
        ),
        extension(18, &[]),
        extension(
            51,
            &prefixed(2, &[&grease_share[..], &x25519_share].concat()),
        ),
        extension(45, &[1, 1]),
        extension(43, &[6, 0x8a, 0x8a, 3, 4, 3, 3]),
        extension(27, &[2, 0, 2]),
        extension(0x1a1a, &[0]),
    ]
    .concat();

    let mut body = vec![3, 3];
    body.extend([0x5e; 32]);
    body.extend(prefixed(1, &[0x77; 32]));
    let suites: Vec<u8> = [
        0x4a4a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035u16,
    ]
    .iter()
    .flat_map(|s| s.to_be_bytes())
    .collect();
    body.extend(prefixed(2, &suites));
    body.extend(prefixed(1, &[0]));
    // Header 4, extensions length 2, padding extension header 4.
    let padding = MESSAGE_LEN - (4 + body.len() + 2 + extensions.len() + 4);
    let extensions = [extensions, extension(21, &vec![0; padding])].concat();
    body.extend(prefixed(2, &extensions));
    [&[1][..], &prefixed(3, &body)].concat()
}

fn record(payload: &[u8]) -> Vec<u8> {
    [&[22, 3, 1][..], &prefixed(2, payload)].concat()
}

fn bench(c: &mut Criterion) {
    let message = browser_hello();
    let one_record = record(&message);
    let third = message.len() / 3;
    let three_records: Vec<Vec<u8>> = message.chunks(third + 1).map(record).collect();
    assert_eq!(three_records.len(), 3);
    assert!(matches!(
        parse_client_hello(&one_record),
        Ok(Progress::Done(_))
    ));

    let mut group = c.benchmark_group("client_hello");
    group.throughput(Throughput::Bytes(one_record.len() as u64));
    group.bench_function("one_shot", |b| {
        b.iter(|| parse_client_hello(black_box(&one_record)))
    });
    group.bench_function("three_records", |b| {
        b.iter(|| {
            let mut reader = ClientHelloReader::new();
            let mut outcome = Ok(Progress::NeedMore);
            for record in &three_records {
                outcome = reader.feed(black_box(record));
            }
            outcome
        })
    });
    group.bench_function("byte_by_byte", |b| {
        b.iter(|| {
            let mut reader = ClientHelloReader::new();
            let mut outcome = Ok(Progress::NeedMore);
            for byte in black_box(&one_record).chunks(1) {
                outcome = reader.feed(byte);
            }
            outcome
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
