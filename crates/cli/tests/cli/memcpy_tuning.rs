//! A serving moat on an AMD CPU re-executes itself with glibc's vector-memcpy tunable (see
//! crates/cli/src/memcpy_tuning.rs); a GLIBC_TUNABLES the user set is left alone.

use crate::gateway_support;

use gateway_support::{Moat, start_http_upstream};

const SETTING: &str = "GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304";

/// The environment of a running process, one `NAME=value` per entry.
fn environment(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// glibc's version as `getconf` reports it, e.g. (2, 36).
fn glibc_version() -> Option<(u32, u32)> {
    let output = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn cpu_is_amd() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let vendor = cpuinfo
        .lines()
        .find(|line| line.starts_with("vendor_id"))
        .unwrap_or_default();
    vendor.contains("AuthenticAMD") || vendor.contains("HygonGenuine")
}

fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Moat {
    let upstream = start_http_upstream().to_string();
    Moat::start_with_env(dir, &["http", &upstream, "--listen", "127.0.0.1:0"], 1, env)
}

#[test]
fn a_serving_moat_runs_with_vector_memcpy_on_amd_cpus_with_an_old_glibc_only() {
    let dir = tempfile::tempdir().unwrap();
    let moat = serve(dir.path(), &[]);
    let tunables: Vec<String> = environment(moat.pid())
        .into_iter()
        .filter(|entry| {
            entry.starts_with("GLIBC_TUNABLES=") || entry.starts_with("MALLOC_TOP_PAD_=")
        })
        .collect();
    let old_glibc = glibc_version().is_some_and(|version| version < (2, 39));
    if cpu_is_amd() && old_glibc && cfg!(target_env = "gnu") && cfg!(target_arch = "x86_64") {
        assert_eq!(tunables, [SETTING, "MALLOC_TOP_PAD_=4194304"]);
        moat.wait_for_log(&format!("re-executed with {SETTING}"));
    } else {
        assert!(tunables.is_empty(), "{tunables:?}");
    }
}

#[test]
fn a_glibc_tunables_the_user_set_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let moat = serve(
        dir.path(),
        &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")],
    );
    let tunables: Vec<String> = environment(moat.pid())
        .into_iter()
        .filter(|entry| entry.starts_with("GLIBC_TUNABLES="))
        .collect();
    assert_eq!(tunables, ["GLIBC_TUNABLES=glibc.malloc.tcache_count=7"]);
}

#[test]
fn moat_memcpy_tuning_off_keeps_moat_from_re_executing() {
    let dir = tempfile::tempdir().unwrap();
    let moat = serve(dir.path(), &[("MOAT_MEMCPY_TUNING", "off")]);
    let tunables: Vec<String> = environment(moat.pid())
        .into_iter()
        .filter(|entry| {
            entry.starts_with("GLIBC_TUNABLES=") || entry.starts_with("MOAT_MEMCPY_TUNED")
        })
        .collect();
    assert!(tunables.is_empty(), "{tunables:?}");
    assert!(!moat.log().contains("re-executed with"), "{}", moat.log());
}
