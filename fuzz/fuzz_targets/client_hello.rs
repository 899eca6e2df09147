//! Fuzzes `sni::client_hello_server_name`: the gateway's ClientHello reader over bytes arriving in reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_gateway::sni::client_hello_server_name;

fuzz_target!(|data: &[u8]| {
    // The first byte sets the size of each socket read (0: everything in one read), so the
    // reader also meets records split across reads.
    let Some((&read_size, bytes)) = data.split_first() else {
        return;
    };
    let read_size = if read_size == 0 {
        bytes.len().max(1)
    } else {
        usize::from(read_size)
    };
    if let Ok(Some(name)) = client_hello_server_name(bytes.chunks(read_size)) {
        // Routing compares names as ASCII DNS names.
        assert!(!name.is_empty() && name.is_ascii(), "{name:?}");
    }
});
