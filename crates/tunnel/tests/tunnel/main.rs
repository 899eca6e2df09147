//! The tunnel's behaviours over real sessions on loopback TCP, one module per behaviour.

mod bytes;
mod control;
mod dead_peer;
mod flow;
mod header;
mod lifecycle;
mod many;
mod stream_cap;
mod support;
