//! The WebSocket frame-boundary tracker (pings toward clients are written only between frames):
//! any bytes, split anywhere, give the same boundaries as fed whole, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartproxy::http::ws_ping::FrameBoundaries;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut whole = FrameBoundaries::default();
    let expected = whole.feed(stream);
    let cut = usize::from(split).min(stream.len());
    let (a, b) = stream.split_at(cut);
    let mut parts = FrameBoundaries::default();
    let mut got = parts.feed(a);
    got.extend(parts.feed(b).into_iter().map(|end| end + cut));
    assert_eq!(whole.lost(), parts.lost());
    if !whole.lost() {
        assert_eq!(expected, got);
    }
    assert!(expected.iter().all(|&end| end <= stream.len()));
});
