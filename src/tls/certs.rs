//! Certificates served when terminating TLS.
