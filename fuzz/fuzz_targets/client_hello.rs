//! Any input, fed whole and in chunks, must give the same outcome and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartproxy::tls::client_hello::{ClientHelloReader, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so the fuzzer explores split points as well as content.
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let mut reader = ClientHelloReader::new();
    let mut chunked = reader.feed(&[]);
    for piece in bytes.chunks(chunk) {
        chunked = reader.feed(piece);
    }
    assert_eq!(chunked, parse_client_hello(bytes));
});
