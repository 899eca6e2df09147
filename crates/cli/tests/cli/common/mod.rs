//! Shared helpers for the `moat` integration tests: run moat, openssl and cfssl in a scratch directory.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch directory that lives as long as the test.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh empty directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file inside it.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path
    }

    /// Reads a file inside it as text.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name))
            .unwrap_or_else(|error| panic!("read {name}: {error}"))
    }

    /// Whether a file exists inside it.
    pub fn exists(&self, name: &str) -> bool {
        self.join(name).exists()
    }

    /// The sorted names of the files directly inside it (to assert that nothing was written).
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .expect("list the scratch directory")
            .map(|entry| {
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// Runs `moat ARGS` in the directory.
    pub fn moat(&self, args: &[&str]) -> Output {
        self.moat_env(args, &[])
    }

    /// Runs `moat ARGS` in the directory with extra environment variables.
    pub fn moat_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.moat_command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run moat")
    }

    /// Starts one moat process per argument list, all before waiting for any, and returns their
    /// outputs in the same order (to race commands against each other).
    pub fn moat_parallel(&self, runs: &[Vec<String>]) -> Vec<Output> {
        let children: Vec<_> = runs
            .iter()
            .map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.moat_command(&args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start moat")
            })
            .collect();
        children
            .into_iter()
            .map(|child| child.wait_with_output().expect("wait for moat"))
            .collect()
    }

    fn moat_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moat"));
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("MOAT_CA_PASSPHRASE")
            .stdin(Stdio::null());
        command
    }

    /// Runs moat and fails the test unless it succeeds; returns stdout.
    pub fn moat_ok(&self, args: &[&str]) -> String {
        let output = self.moat(args);
        assert_success("moat", args, &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs moat, fails the test unless it fails, and returns its stderr.
    pub fn moat_err(&self, args: &[&str]) -> String {
        let output = self.moat(args);
        assert!(
            !output.status.success(),
            "moat {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Runs a program in the directory.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("run {program}: {error}"))
    }

    /// Runs openssl; the test fails unless it succeeds. Returns stdout + stderr.
    pub fn openssl(&self, args: &[&str]) -> String {
        let output = self.run("openssl", args);
        assert_success("openssl", args, &output);
        combined(&output)
    }

    /// Runs `openssl verify ARGS` and returns (success, stdout + stderr).
    pub fn openssl_verify(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["verify"];
        full.extend_from_slice(args);
        let output = self.run("openssl", &full);
        (output.status.success(), combined(&output))
    }

    /// Runs a shell pipeline (for `cfssl ... | cfssljson -bare x`); the test fails unless it succeeds.
    pub fn shell(&self, script: &str) -> String {
        let output = self.run("sh", &["-c", script]);
        assert_success("sh -c", &[script], &output);
        combined(&output)
    }
}

/// A command line split at white space, for arguments that hold none.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// stdout then stderr as text.
pub fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_success(program: &str, args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        combined(output)
    );
}

/// The permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("stat {}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The serial of a certificate file as `openssl x509 -serial` prints it (upper-case hex).
pub fn serial_of(scratch: &Scratch, cert: &str) -> String {
    scratch
        .openssl(&["x509", "-in", cert, "-noout", "-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

/// The text dump of a certificate (`openssl x509 -text`).
pub fn text_of(scratch: &Scratch, cert: &str) -> String {
    scratch.openssl(&["x509", "-in", cert, "-noout", "-text"])
}
