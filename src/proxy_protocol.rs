//! The PROXY protocol (v1 text and v2 binary): reading a header a trusted peer sends ahead of
//! its client's bytes, and writing one ahead of ours to a backend that asks for it.
