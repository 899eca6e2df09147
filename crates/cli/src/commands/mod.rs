//! One module per top-level command; each turns its flags into calls on the libraries.

pub mod config;
pub mod demo;
pub mod pki;
pub mod pki_inspect;
pub mod pki_p12;
pub mod reload;
pub mod serve;
pub mod verify;
