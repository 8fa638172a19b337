//! Telling HTTP from other plaintext by its first bytes: an HTTP/1 request line starts with a
//! method token and a space; HTTP/2 with prior knowledge starts with the connection preface.

use tokio::io::{AsyncRead, AsyncReadExt};

/// RFC 9113 §3.4.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest method token looked at before deciding the bytes are not HTTP.
const MAX_METHOD_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    NotHttp,
    NeedMore,
}

pub fn classify(prefix: &[u8]) -> Detected {
    let preface_len = prefix.len().min(H2_PREFACE.len());
    if prefix.get(..preface_len) == H2_PREFACE.get(..preface_len) {
        return if prefix.len() >= H2_PREFACE.len() {
            Detected::Http2
        } else {
            Detected::NeedMore
        };
    }
    for (i, &b) in prefix.iter().take(MAX_METHOD_LEN + 1).enumerate() {
        match b {
            b' ' if i > 0 => return Detected::Http1,
            // Methods are tokens; every registered one is upper case.
            b'A'..=b'Z' | b'-' | b'_' => {}
            _ => return Detected::NotHttp,
        }
    }
    if prefix.len() > MAX_METHOD_LEN {
        Detected::NotHttp
    } else {
        Detected::NeedMore
    }
}

/// Reads until `classify` decides, appending to `prefix` (never past `max`). End of stream
/// or `max` bytes without a decision is `NotHttp`. The caller bounds the wait.
pub async fn read_until_known<S: AsyncRead + Unpin>(
    stream: &mut S,
    prefix: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Detected> {
    loop {
        let detected = classify(prefix);
        if detected != Detected::NeedMore {
            return Ok(detected);
        }
        let start = prefix.len();
        if start >= max {
            return Ok(Detected::NotHttp);
        }
        prefix.resize(start + (max - start).min(64), 0);
        let n = match prefix.get_mut(start..) {
            Some(spare) => stream.read(spare).await,
            None => Ok(0),
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                prefix.truncate(start);
                return Err(e);
            }
        };
        prefix.truncate(start + n);
        if n == 0 {
            return Ok(if prefix.is_empty() {
                Detected::NotHttp
            } else {
                match classify(prefix) {
                    Detected::NeedMore => Detected::NotHttp,
                    other => other,
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_lines_and_prefaces() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Detected::Http1);
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Detected::Http1);
        assert_eq!(classify(b"GE"), Detected::NeedMore);
        assert_eq!(classify(b""), Detected::NeedMore);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Detected::NeedMore);
        assert_eq!(classify(H2_PREFACE), Detected::Http2);
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Detected::Http1);
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), Detected::NotHttp);
        assert_eq!(classify(b"hello"), Detected::NotHttp);
        assert_eq!(classify(b" GET"), Detected::NotHttp);
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"), Detected::NotHttp);
    }

    proptest! {
        #[test]
        fn a_decision_never_changes_with_more_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..40), cut in 0usize..40) {
            let cut = cut.min(bytes.len());
            let early = classify(&bytes[..cut]);
            if early != Detected::NeedMore {
                prop_assert_eq!(early, classify(&bytes));
            }
        }
    }
}
