//! Reading a client's first bytes on a port that routes on them: the ClientHello is read
//! (bounded by MAX_CLIENT_HELLO_SIZE and maxPendingDataSize) and everything read is kept, so
//! it can be forwarded untouched or handed to a TLS acceptor.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::lifecycle::CloseReason;
use crate::tls::client_hello::{ClientHello, ClientHelloReader, Progress, SniffError};

/// Bytes asked of the socket per read while the ClientHello is incomplete.
const READ_CHUNK: usize = 4096;

/// What the first bytes turned out to be.
pub enum Sniffed {
    Tls(ClientHello),
    /// Not TLS at all (the first bytes rule it out); only plain routes can take it.
    NotTls,
}

/// Why the connection ends before it is routed.
#[derive(Debug)]
pub struct Refused {
    pub reason: CloseReason,
    pub detail: String,
    pub error: Option<io::ErrorKind>,
}

impl Refused {
    fn new(reason: CloseReason, detail: impl Into<String>) -> Refused {
        Refused {
            reason,
            detail: detail.into(),
            error: None,
        }
    }
}

/// Reads until the ClientHello is complete or the bytes cannot be one. `prefix` may already
/// hold the first bytes (those after a PROXY header); everything read is appended to it. The
/// caller bounds the wait (initialDataTimeout).
pub async fn read_client_hello(
    client: &mut TcpStream,
    prefix: &mut Vec<u8>,
    max_pending: usize,
) -> Result<Sniffed, Refused> {
    let mut reader = ClientHelloReader::new();
    if !prefix.is_empty()
        && let Some(sniffed) = sniff(&mut reader, prefix)?
    {
        return Ok(sniffed);
    }
    loop {
        let start = prefix.len();
        let room = max_pending.saturating_sub(start);
        if room == 0 {
            return Err(Refused::new(
                CloseReason::Limit,
                "ClientHello larger than maxPendingDataSize",
            ));
        }
        prefix.resize(start + room.min(READ_CHUNK), 0);
        let read = match prefix.get_mut(start..) {
            Some(spare) => client.read(spare).await,
            None => Ok(0),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                prefix.truncate(start);
                return Err(Refused {
                    reason: CloseReason::ClientReset,
                    detail: "error while reading the ClientHello".into(),
                    error: Some(e.kind()),
                });
            }
        };
        prefix.truncate(start + n);
        if n == 0 {
            let detail = if start == 0 {
                "closed before sending anything"
            } else {
                "closed before its ClientHello was complete"
            };
            return Err(Refused::new(CloseReason::ClientFin, detail));
        }
        if let Some(sniffed) = sniff(&mut reader, prefix.get(start..).unwrap_or_default())? {
            return Ok(sniffed);
        }
    }
}

/// Feeds new bytes to the reader; `None` while the ClientHello is incomplete.
fn sniff(reader: &mut ClientHelloReader, bytes: &[u8]) -> Result<Option<Sniffed>, Refused> {
    match reader.feed(bytes) {
        Ok(Progress::NeedMore) => Ok(None),
        Ok(Progress::Done(hello)) => Ok(Some(Sniffed::Tls(hello))),
        Err(SniffError::NotTls) => Ok(Some(Sniffed::NotTls)),
        Err(e) => Err(Refused::new(CloseReason::NotTls, e.to_string())),
    }
}
