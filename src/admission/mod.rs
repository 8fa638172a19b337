//! Admission: the stage every connection and every HTTP request passes before it may reach a
//! backend. Address lists, connection limits and request limits live here, so no path can
//! skip them.

pub mod basic_auth;
pub mod per_ip;
pub mod request_rate;
mod table;
pub mod window;
