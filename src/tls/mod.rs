//! TLS: reading the ClientHello without terminating (`client_hello`), the certificates served
//! when terminating (`certs`), and the settings for re-encrypting to a backend (`backend`).

pub(crate) mod backend;
pub(crate) mod certs;
pub mod client_hello;

pub use client_hello::TlsVersion;
