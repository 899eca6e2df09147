//! Re-executes a serving `moat` once so that glibc copies memory with vector loops on AMD CPUs.
//!
//! glibc up to 2.38 copies blocks above a few KiB with `rep movsb`. AMD Zen CPUs run it several
//! times slower than vector loops when source and destination are misaligned against each other,
//! which is how rustls copies every outgoing record (plaintext into a buffer behind the 5-byte
//! record header): relaying a TLS stream spent a quarter of its CPU in that one `memcpy`
//! (measured with perf on `moat tls`, 1 GiB download: 1.74 CPU-s without the setting, 0.94 with
//! it). glibc reads its tunables only when a process starts, hence the re-execution.
//!
//! The same re-execution keeps 4 MiB at the top of glibc's heap (`MALLOC_TOP_PAD_`; not as a
//! second tunable, since Debian's glibc 2.36 applies only the first one of `GLIBC_TUNABLES`):
//! otherwise glibc hands the top back to the kernel whenever 128 KiB there are free and takes it
//! back page by page, a page fault each, which the tunnel's 64 KiB frames trigger all the time
//! (an edge relaying an agent-terminated download: ~100 faults per MB; edge + agent CPU per MB
//! 4.8 → 3.8 ms with the pad; idle memory per connection unchanged).
//!
//! It happens only where it helps: an AMD (or Hygon) CPU, x86-64 Linux, a glibc older than 2.39,
//! no `GLIBC_TUNABLES` of the user's, and not `MOAT_MEMCPY_TUNING=off`. The re-executed process
//! says so in one log line.

/// Where glibc reads its tunables from.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Copies of up to 4 MiB use vector loops rather than `rep movsb`.
const SETTING: &str = "glibc.cpu.x86_rep_movsb_threshold=4194304";

/// glibc keeps this many bytes at the top of its heap instead of trimming them (4 MiB).
const HEAP_TOP_PAD: (&str, &str) = ("MALLOC_TOP_PAD_", "4194304");

/// `off` keeps moat from re-executing itself.
const SWITCH: &str = "MOAT_MEMCPY_TUNING";

/// Set on the re-executed process, so that it can log what happened once logging is up.
const MARKER: &str = "MOAT_MEMCPY_TUNED";

/// The first glibc whose `memcpy` no longer needs the setting.
const FIXED_GLIBC: (u32, u32) = (2, 39);

/// What to do at startup, decided from the facts of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Re-execute with [`SETTING`].
    Reexecute,
    /// Run as is, for this reason.
    Keep(&'static str),
}

/// The facts [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
struct Facts<'a> {
    /// x86-64 Linux with glibc (the only place the setting exists).
    glibc_x86_64: bool,
    amd_cpu: bool,
    /// The running glibc's version, when it could be read.
    glibc: Option<(u32, u32)>,
    /// `GLIBC_TUNABLES` is set (the user's choice, or this is the re-executed process).
    tunables_set: bool,
    /// The value of `MOAT_MEMCPY_TUNING`.
    switch: Option<&'a str>,
}

fn decide(facts: Facts<'_>) -> Decision {
    if facts
        .switch
        .is_some_and(|value| value.eq_ignore_ascii_case("off"))
    {
        return Decision::Keep("MOAT_MEMCPY_TUNING=off");
    }
    if !facts.glibc_x86_64 {
        return Decision::Keep("not x86-64 Linux with glibc");
    }
    if facts.tunables_set {
        return Decision::Keep("GLIBC_TUNABLES is already set");
    }
    if !facts.amd_cpu {
        return Decision::Keep("not an AMD CPU");
    }
    match facts.glibc {
        Some(version) if version < FIXED_GLIBC => Decision::Reexecute,
        Some(_) => Decision::Keep("glibc 2.39 or later"),
        None => Decision::Keep("the glibc version could not be read"),
    }
}

/// Replaces the process with itself, same arguments, plus [`SETTING`] in `GLIBC_TUNABLES`, when
/// [`decide`] says so. Returns (and moat goes on as it is) otherwise, or when the re-execution
/// fails.
pub(crate) fn reexec_with_vector_memcpy() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        let switch = std::env::var(SWITCH).ok();
        let facts = Facts {
            glibc_x86_64: true,
            amd_cpu: cpu_is_amd(),
            glibc: running_glibc(),
            tunables_set: std::env::var_os(TUNABLES).is_some(),
            switch: switch.as_deref(),
        };
        if decide(facts) != Decision::Reexecute {
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
        let _ = command
            .args(arguments)
            .env(TUNABLES, SETTING)
            .env(HEAP_TOP_PAD.0, HEAP_TOP_PAD.1)
            .env(MARKER, "1")
            .exec();
    }
}

/// One log line, once logging is set up, when this process is the re-executed one.
pub(crate) fn log_if_tuned() {
    if std::env::var_os(MARKER).is_some() {
        tracing::info!(
            "re-executed with {TUNABLES}={SETTING}: glibc before 2.39 copies with rep movsb, \
             which AMD CPUs run slowly for TLS records; set {SWITCH}=off to run without it"
        );
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

/// The version of the glibc this process runs on, read from the library file it mapped (its
/// banner says `... release version 2.36.`): no FFI call, so no unsafe code.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
fn running_glibc() -> Option<(u32, u32)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let library = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            std::path::Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libc.so"))
        })?;
    glibc_version_in(&std::fs::read(library).ok()?)
}

/// The `MAJOR.MINOR` after glibc's `release version ` banner in a library's bytes.
fn glibc_version_in(bytes: &[u8]) -> Option<(u32, u32)> {
    const BANNER: &[u8] = b"release version ";
    let at = bytes
        .windows(BANNER.len())
        .position(|window| window == BANNER)?;
    let rest = &bytes[at + BANNER.len()..];
    let text: String = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| char::from(*b))
        .collect();
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD_OLD_GLIBC: Facts<'static> = Facts {
        glibc_x86_64: true,
        amd_cpu: true,
        glibc: Some((2, 36)),
        tunables_set: false,
        switch: None,
    };

    #[test]
    fn each_branch_of_the_decision() {
        assert_eq!(decide(AMD_OLD_GLIBC), Decision::Reexecute);
        let cases = [
            (
                Facts {
                    switch: Some("off"),
                    ..AMD_OLD_GLIBC
                },
                "MOAT_MEMCPY_TUNING=off",
            ),
            (
                Facts {
                    glibc_x86_64: false,
                    ..AMD_OLD_GLIBC
                },
                "not x86-64 Linux with glibc",
            ),
            (
                Facts {
                    tunables_set: true,
                    ..AMD_OLD_GLIBC
                },
                "GLIBC_TUNABLES is already set",
            ),
            (
                Facts {
                    amd_cpu: false,
                    ..AMD_OLD_GLIBC
                },
                "not an AMD CPU",
            ),
            (
                Facts {
                    glibc: Some((2, 39)),
                    ..AMD_OLD_GLIBC
                },
                "glibc 2.39 or later",
            ),
            (
                Facts {
                    glibc: None,
                    ..AMD_OLD_GLIBC
                },
                "the glibc version could not be read",
            ),
        ];
        for (facts, reason) in cases {
            assert_eq!(decide(facts), Decision::Keep(reason), "{facts:?}");
        }
        assert_eq!(
            decide(Facts {
                switch: Some("on"),
                ..AMD_OLD_GLIBC
            }),
            Decision::Reexecute
        );
    }

    #[test]
    fn the_version_is_read_from_glibcs_banner() {
        let banner =
            b"\0GNU C Library (Debian GLIBC 2.36-9+deb12u9) stable release version 2.36.\n";
        assert_eq!(glibc_version_in(banner), Some((2, 36)));
        assert_eq!(
            glibc_version_in(b"release version 2.39.9000"),
            Some((2, 39))
        );
        assert_eq!(glibc_version_in(b"no banner here"), None);
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    #[test]
    fn the_running_glibc_is_found() {
        let (major, _) = running_glibc().expect("the glibc version of this process");
        assert_eq!(major, 2);
    }
}
