//! Re-executes a serving `moat` once so that glibc copies memory with vector loops on AMD CPUs.
//!
//! glibc up to 2.38 copies blocks above a few KiB with `rep movsb`. AMD Zen CPUs run it several
//! times slower than vector loops when source and destination are misaligned against each other,
//! which is how rustls copies every outgoing record (plaintext into a buffer behind the 5-byte
//! record header): relaying a TLS stream spent a quarter of its CPU in that one `memcpy`
//! (measured with perf on `moat tls`, 1 GiB download: 1.74 CPU-s without the setting, 0.94 with
//! it). glibc reads its tunables only when a process starts, hence the re-execution.

/// Where glibc reads its tunables from.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Copies of up to 4 MiB use vector loops rather than `rep movsb`.
const SETTING: &str = "glibc.cpu.x86_rep_movsb_threshold=4194304";

/// Replaces the process with itself, same arguments, plus [`SETTING`] in `GLIBC_TUNABLES`.
/// Returns (and moat goes on as it is) when `GLIBC_TUNABLES` is already set (the user's own
/// choice, or this is the re-executed process), when the CPU is not an AMD one, on anything but
/// x86-64 Linux with glibc, or when the re-execution fails.
pub(crate) fn reexec_with_vector_memcpy() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        if std::env::var_os(TUNABLES).is_some() || !cpu_is_amd() {
            return;
        }
        let Ok(executable) = std::env::current_exe() else {
            return;
        };
        let mut arguments = std::env::args_os();
        let mut command = std::process::Command::new(executable);
        if let Some(name) = arguments.next() {
            command.arg0(name);
        }
        // exec only returns on failure; moat then simply runs without the setting.
        let _ = command.args(arguments).env(TUNABLES, SETTING).exec();
    }
}

/// True on AMD CPUs and on Hygon's, which are Zen cores.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn cpu_is_amd() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|cpuinfo| {
        cpuinfo
            .lines()
            .find(|line| line.starts_with("vendor_id"))
            .is_some_and(|line| line.contains("AuthenticAMD") || line.contains("HygonGenuine"))
    })
}
