//! Any byte stream, scanned whole and split in two, must give the same outcome and never panic;
//! what is handed on is always the stream's own prefix, and every head handed on is one that
//! httparse reads to its last byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartproxy::http::h1_guard::{Fed, RequestScanner};

// Small, so the fuzzer reaches the head limit as well as everything inside it.
const MAX_HEAD: usize = 1024;

fn scan(pieces: &[&[u8]]) -> (Fed, Vec<u8>) {
    let mut scanner = RequestScanner::new(MAX_HEAD);
    let mut all = Fed::default();
    for piece in pieces {
        let fed = scanner.feed(piece);
        all.passed.extend_from_slice(&fed.passed);
        all.heads.extend(fed.heads);
        all.rejection = all.rejection.or(fed.rejection);
        all.broken_body |= fed.broken_body;
    }
    (all, scanner.held().to_vec())
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the split point, so the fuzzer explores splits as well as content.
    let [a, b, stream @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*a, *b])) % (stream.len() + 1);
    let (first, second) = stream.split_at(split);

    let (whole, held) = scan(&[stream]);
    assert_eq!(scan(&[first, second]), (whole.clone(), held.clone()));

    assert!(stream.starts_with(&whole.passed));
    if whole.rejection.is_none() && !whole.broken_body {
        assert_eq!([whole.passed.as_slice(), &held].concat(), stream);
    }
    for head in &whole.heads {
        assert!(head.bytes.len() <= MAX_HEAD);
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let parsed = httparse::Request::new(&mut headers).parse(&head.bytes);
        assert_eq!(parsed, Ok(httparse::Status::Complete(head.bytes.len())));
    }
});
