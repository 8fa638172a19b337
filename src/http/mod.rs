//! The HTTP engine: HTTP/1.1 and HTTP/2 from clients, routed per request, forwarded over pooled
//! backend connections; WebSocket upgrades end in the core relay.

pub mod h1_guard;
pub mod ws_ping;
