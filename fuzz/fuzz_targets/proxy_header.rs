//! PROXY protocol headers from arbitrary bytes: never panics; a whole header lies within the
//! input and reads the same alone; a decision taken on a prefix is the decision on the whole;
//! and the addresses read, written again in either version, read back as written.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use smartproxy::config::ProxyProtocolVersion;
use smartproxy::proxy_protocol::{Addresses, MAX_HEADER_LEN, Parse, encode, parse};

/// What a header written for `a` carries: both sides IPv4 when both can be, else both IPv6.
fn as_written(a: Addresses) -> Addresses {
    let (s, d) = (
        a.source.ip().to_canonical(),
        a.destination.ip().to_canonical(),
    );
    let six = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let (s, d) = match (s, d) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (s, d),
        _ => (six(s), six(d)),
    };
    Addresses {
        source: SocketAddr::new(s, a.source.port()),
        destination: SocketAddr::new(d, a.destination.port()),
    }
}

fn same_kind(a: &Parse, b: &Parse) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    for cut in 0..data.len().min(130) {
        match parse(&data[..cut]) {
            Parse::Incomplete => {}
            early @ Parse::Complete { .. } => assert_eq!(early, whole, "at {cut}"),
            early => assert!(
                same_kind(&early, &whole),
                "at {cut}: {early:?}, whole {whole:?}"
            ),
        }
    }
    if let Parse::Complete { len, addresses } = whole {
        assert!(len <= data.len() && len <= MAX_HEADER_LEN);
        assert_eq!(parse(&data[..len]), Parse::Complete { len, addresses });
        if let Some(addresses) = addresses {
            for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
                let header = encode(version, addresses);
                let again = Parse::Complete {
                    len: header.len(),
                    addresses: Some(as_written(addresses)),
                };
                assert_eq!(parse(&header), again, "{version:?}");
            }
        }
    }
});
