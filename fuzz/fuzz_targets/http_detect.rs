//! Telling HTTP from other plaintext by the first bytes: never panics, and a decision made on a
//! prefix is the decision on the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartproxy::http::detect::{Detected, classify};

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    for cut in 0..data.len().min(40) {
        let early = classify(&data[..cut]);
        if early != Detected::NeedMore {
            assert_eq!(early, whole);
        }
    }
});
