//! One module per top-level command; each turns its flags into calls on the libraries.

pub mod agent;
pub mod audit;
pub mod config;
pub mod demo;
mod demo_tunnel;
pub mod edge;
pub mod edge_admin;
pub mod inspect;
pub mod pki;
pub mod reload;
pub mod serve;
pub mod verify;
