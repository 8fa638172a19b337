//! TLS toward backends when re-encrypting.
