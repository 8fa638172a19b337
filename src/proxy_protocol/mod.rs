//! The PROXY protocol (v1 text and v2 binary): reading a header a trusted peer sends ahead of
//! its client's bytes, and writing one ahead of ours to a backend that asks for it.
//!
//! Parsing and building go through the `ppp` crate. Two parts of v1 are done here instead:
//! where a line ends (`ppp` judges partial lines unreliably; see `parse_v1`), and
//! `PROXY UNKNOWN` lines, whose rest the receiver must ignore (`ppp` refuses one with more than
//! four words after `UNKNOWN`).
//!
//! A header carries addresses exactly as written: a v6 header with IPv4-mapped addresses
//! (`::ffff:a.b.c.d`) gives IPv6 socket addresses. [`encode`] writes a pair whose two sides
//! are both IPv4 or IPv4-mapped IPv6 as IPv4 (`TCP4`, v2 family 0x11), and any other pair as
//! IPv6, with an IPv4 side mapped into IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;
use ppp::PartialResult;
use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ProxyProtocolVersion;

#[cfg(test)]
mod tests;

/// The addresses a PROXY header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole header of `len` bytes. `addresses` is None for v2 LOCAL, v1 UNKNOWN, and v2
    /// families other than TCP over IPv4/IPv6 (UDP, unix, unspecified): the caller then uses
    /// the socket's own addresses. TLVs are ignored.
    Complete {
        len: usize,
        addresses: Option<Addresses>,
    },
    /// A prefix of a header (or of a signature): more bytes are needed.
    Incomplete,
    /// These bytes do not begin a PROXY header (neither `PROXY ` nor the v2 signature).
    NotProxy,
    /// They begin one, but it is malformed; the text says what is wrong, for logs.
    Invalid(String),
}

/// Longest header accepted: v1 is at most 107 bytes; v2 is 16 + its length field.
pub const MAX_HEADER_LEN: usize = 16 + 65_535;

/// How a v1 header begins.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// How a v2 header begins (12 bytes).
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;
/// Longest v1 header, CRLF included.
const V1_MAX_LEN: usize = 107;
/// `PROXY UNKNOWN`, after which a v1 line's content is ignored.
const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN";
/// The most bytes one read in [`read_header`] adds to the buffer.
const READ_CHUNK: usize = 4096;

/// Whether `bytes` begin with a whole v1 (`PROXY `) or v2 signature (12 bytes). Used to refuse
/// headers from peers that may not send one; fewer bytes than a signature → false.
pub fn starts_with_signature(bytes: &[u8]) -> bool {
    bytes.starts_with(V1_SIGNATURE) || bytes.starts_with(V2_SIGNATURE)
}

/// Whether `bytes` are a non-empty proper start of the v1 or the v2 signature: more bytes are
/// needed to tell whether a header begins. At most 11 bytes long.
pub fn is_partial_signature(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && ((bytes.len() < V1_SIGNATURE.len() && V1_SIGNATURE.starts_with(bytes))
            || (bytes.len() < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(bytes)))
}

/// Reads the first bytes of a connection as a PROXY header. Never panics; a `Complete` length
/// is never more than `bytes.len()`, and `parse` of the header's bytes alone gives the same.
pub fn parse(bytes: &[u8]) -> Parse {
    if bytes.starts_with(V1_SIGNATURE) {
        parse_v1(bytes)
    } else if bytes.starts_with(V2_SIGNATURE) {
        parse_v2(bytes)
    } else if V1_SIGNATURE.starts_with(bytes) || V2_SIGNATURE.starts_with(bytes) {
        Parse::Incomplete
    } else {
        Parse::NotProxy
    }
}

/// `bytes` begin with `PROXY `.
///
/// Where the line ends is decided here, not by `ppp`: its verdict on a line still being
/// received is not reliable (it calls `PROXY TCP4 a b p ` malformed, though the destination
/// port may follow, and anything ending in `PROXY` incomplete, however wrong what precedes it),
/// so `ppp` only ever sees a whole line. Until the CRLF, or 107 bytes without one, a line is
/// `Incomplete` unless it holds a byte no header can hold.
fn parse_v1(bytes: &[u8]) -> Parse {
    // A 107-byte line has its CR at index 105, so a CR further on means a line too long.
    let window = bytes.get(..V1_MAX_LEN - 1).unwrap_or(bytes);
    let cr = window.iter().position(|&b| b == b'\r');
    let text = window.get(..cr.unwrap_or(window.len())).unwrap_or(window);
    if let Some(bad) = text.iter().find(|b| !is_v1_text(**b)) {
        return invalid_v1(&format!("byte 0x{bad:02x} is not printable ASCII"), text);
    }
    let Some(cr) = cr else {
        if bytes.len() >= V1_MAX_LEN - 1 {
            return invalid_v1("no CRLF within 107 bytes", window);
        }
        return Parse::Incomplete;
    };
    match bytes.get(cr + 1) {
        None => Parse::Incomplete,
        Some(b'\n') => {
            let len = cr + 2;
            let line = bytes.get(..len).unwrap_or(bytes);
            if is_v1_unknown(line) {
                return Parse::Complete {
                    len,
                    addresses: None,
                };
            }
            match v1::Header::try_from(line) {
                Ok(header) => Parse::Complete {
                    len,
                    addresses: from_v1(header.addresses),
                },
                Err(error) => invalid_v1(&error.to_string(), line),
            }
        }
        Some(_) => invalid_v1("CR not followed by LF", text),
    }
}

fn is_v1_text(byte: u8) -> bool {
    byte.is_ascii_graphic() || byte == b' '
}

/// `PROXY UNKNOWN`, then a space or the CR: the addresses, if any, are ignored.
fn is_v1_unknown(line: &[u8]) -> bool {
    line.starts_with(V1_UNKNOWN) && matches!(line.get(V1_UNKNOWN.len()), Some(b' ' | b'\r'))
}

fn invalid_v1(what: &str, line: &[u8]) -> Parse {
    Parse::Invalid(format!("v1: {what} (\"{}\")", line.escape_ascii()))
}

fn from_v1(addresses: v1::Addresses) -> Option<Addresses> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v1::Addresses::Tcp6(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v1::Addresses::Unknown => None,
    }
}

/// `bytes` begin with the v2 signature.
fn parse_v2(bytes: &[u8]) -> Parse {
    match v2::Header::try_from(bytes) {
        Ok(header) => Parse::Complete {
            len: header.header.len(),
            addresses: from_v2(&header),
        },
        Err(error) if error.is_incomplete() => Parse::Incomplete,
        Err(error) => Parse::Invalid(format!("v2: {error}")),
    }
}

/// Only PROXY over TCP (stream) on IPv4 or IPv6 names the client; LOCAL, UDP, unix sockets and
/// an unspecified family or protocol leave the socket's own addresses in use.
fn from_v2(header: &v2::Header<'_>) -> Option<Addresses> {
    if header.command != v2::Command::Proxy || header.protocol != v2::Protocol::Stream {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::IPv6(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// What [`read_header`] found at the start of a connection.
#[derive(Debug)]
pub enum Received {
    /// A header was read and removed from the buffer.
    Header(Option<Addresses>),
    /// The first bytes are not a PROXY header (they stay in the buffer).
    NoHeader,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("malformed PROXY header: {0}")]
    Invalid(String),
    #[error("closed before the PROXY header was complete")]
    Closed,
    #[error("error while reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads from `stream` until `buf` (which may already hold bytes) holds a whole header, or it
/// is clear there is none. On `Header`, the header's bytes are removed from the front of `buf`
/// and what was read after it stays. The caller bounds the time; this bounds the bytes (never
/// more than [`MAX_HEADER_LEN`] plus one read chunk of 4096 bytes). A peer that closes before
/// sending anything, or in the middle of a header (or of a signature), → `Closed`.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Received, ReadError> {
    loop {
        match parse(buf) {
            Parse::Complete { len, addresses } => {
                buf.drain(..len.min(buf.len()));
                return Ok(Received::Header(addresses));
            }
            Parse::NotProxy => return Ok(Received::NoHeader),
            Parse::Invalid(what) => return Err(ReadError::Invalid(what)),
            Parse::Incomplete => {}
        }
        // `parse` settles every header by MAX_HEADER_LEN bytes; this only guards that.
        if buf.len() >= MAX_HEADER_LEN {
            return Err(ReadError::Invalid(format!(
                "longer than {MAX_HEADER_LEN} bytes"
            )));
        }
        // `read_buf` only appends what was read, so a caller's timeout leaves `buf` whole.
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut (&mut *buf).limit(READ_CHUNK)).await? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

/// A header for `addresses`. A pair whose sides are both IPv4 or IPv4-mapped IPv6 is written as
/// IPv4 (`TCP4`, v2 family 0x11); any other pair as IPv6 (`TCP6`, 0x21), an IPv4 side mapped
/// into IPv6 (`::ffff:a.b.c.d`). Scope ids and flow labels are not carried.
pub fn encode(version: ProxyProtocolVersion, addresses: Addresses) -> Vec<u8> {
    let pair = wire_pair(addresses);
    match version {
        ProxyProtocolVersion::V1 => v1::Addresses::from(pair).to_string().into_bytes(),
        ProxyProtocolVersion::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            pair,
        )
        .build()
        .expect("ppp only fails to build a v2 header whose payload passes 65,535 bytes"),
    }
}

/// A header that says "no client address" (v1 `PROXY UNKNOWN\r\n`, v2 LOCAL): what health
/// checks send.
pub fn encode_local(version: ProxyProtocolVersion) -> Vec<u8> {
    match version {
        ProxyProtocolVersion::V1 => v1::Addresses::Unknown.to_string().into_bytes(),
        ProxyProtocolVersion::V2 => v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .expect("ppp only fails to build a v2 header whose payload passes 65,535 bytes"),
    }
}

/// The pair as written: both IPv4 when both sides can be, else both IPv6. `ppp` itself turns a
/// mixed pair into UNKNOWN / an unspecified family, so the families are made to agree first.
fn wire_pair(addresses: Addresses) -> (SocketAddr, SocketAddr) {
    let Addresses {
        source,
        destination,
    } = addresses;
    match (as_ipv4(source.ip()), as_ipv4(destination.ip())) {
        (Some(s), Some(d)) => (
            SocketAddr::from((s, source.port())),
            SocketAddr::from((d, destination.port())),
        ),
        _ => (
            SocketAddr::from((as_ipv6(source.ip()), source.port())),
            SocketAddr::from((as_ipv6(destination.ip()), destination.port())),
        ),
    }
}

fn as_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn as_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
