//! A running moat: starting it, reading its ready lines, stdout and log, signals and exit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::certificates::MTLS_FILES;
use super::ports::{ADDRESS_IN_USE, with_free_port};

/// A running moat process; killed when dropped.
pub struct Moat {
    child: Child,
    /// `(endpoint name, address)` from each ready line, in order.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Every stdout line read up to the last ready line.
    pub stdout: Vec<String>,
    /// The stdout lines after those, as moat prints them.
    later_stdout: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Moat {
    /// Starts `moat ARGS` in `dir` (MOAT_HOME = dir/home, log in dir/moat.log) and waits for one
    /// ready line per expected endpoint.
    pub fn start(dir: &Path, args: &[&str], endpoints: usize) -> Moat {
        Moat::start_with_env(dir, args, endpoints, &[])
    }

    /// `moat KIND UPSTREAM --listen 127.0.0.1:0 EXTRA...` in `dir`: one endpoint on a free port.
    pub fn serve(dir: &Path, kind: &str, upstream: &str, extra: &[&str]) -> Moat {
        let mut args = vec![kind, upstream, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Moat::start(dir, &args, 1)
    }

    /// [`Moat::serve`] with the usual mTLS files of a test directory: `server.crt`,
    /// `server.key` and the client CAs in `cas.pem`.
    pub fn serve_mtls(dir: &Path, kind: &str, upstream: &str, extra: &[&str]) -> Moat {
        Moat::serve(dir, kind, upstream, &[&MTLS_FILES[..], extra].concat())
    }

    /// Like [`Moat::start`], logging to `dir/LOG_NAME.log`: several moat processes in one
    /// directory (an edge and its agents) each keep their own log.
    pub fn start_logged(dir: &Path, log_name: &str, args: &[&str], endpoints: usize) -> Moat {
        Moat::launch_logged(dir, log_name, args, endpoints, &[])
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Like [`Moat::start`], with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        args: &[&str],
        endpoints: usize,
        env: &[(&str, &str)],
    ) -> Moat {
        Moat::launch(dir, args, endpoints, env).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts moat with arguments that name a fixed port (a config where several endpoints
    /// share one address cannot use port 0): `args_for(port)` returns the arguments, writing
    /// any config file that names the port first. The port comes from [`with_free_port`], so
    /// if another process binds it before moat does, moat is started again on another one.
    pub fn start_on_free_port(
        dir: &Path,
        endpoints: usize,
        mut args_for: impl FnMut(u16) -> Vec<String>,
    ) -> Moat {
        with_free_port("moat", |port| {
            let args = args_for(port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Moat::launch(dir, &args, endpoints, &[])
        })
    }

    /// Starts moat and waits for its ready lines; `Err` when it could not bind an address
    /// because another process holds it (the caller may retry on another port), a panic for
    /// any other failure.
    fn launch(
        dir: &Path,
        args: &[&str],
        endpoints: usize,
        env: &[(&str, &str)],
    ) -> Result<Moat, String> {
        Moat::launch_logged(dir, "moat", args, endpoints, env)
    }

    /// [`Moat::launch`] logging to `dir/LOG_NAME.log`.
    fn launch_logged(
        dir: &Path,
        log_name: &str,
        args: &[&str],
        endpoints: usize,
        env: &[(&str, &str)],
    ) -> Result<Moat, String> {
        let log = dir.join(format!("{log_name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(args)
            .current_dir(dir)
            .env("MOAT_HOME", dir.join("home"))
            .env_remove("RUST_LOG")
            .env_remove("GLIBC_TUNABLES")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("moat starts");
        let (lines, received) = mpsc::channel();
        let mut moat = Moat {
            child,
            endpoints: Vec::new(),
            stdout: Vec::new(),
            later_stdout: received,
            log,
        };
        let stdout = moat.child.stdout.take().unwrap();
        thread::spawn(move || {
            // Keeps reading to the end so moat never blocks on a full pipe (its audit events go
            // to stdout by default), even after the test stopped listening.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while moat.endpoints.len() < endpoints {
            let left = deadline.saturating_duration_since(Instant::now());
            match moat.later_stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, address)) = parse_ready_line(&line) {
                        moat.endpoints.push((name, address));
                    }
                    moat.stdout.push(line);
                }
                Err(_) => {
                    // Its stdout closes as it exits; give the exit a moment to be reaped.
                    let mut status = moat.child.try_wait().unwrap();
                    let reaped_by = Instant::now() + Duration::from_secs(2);
                    while status.is_none() && Instant::now() < reaped_by {
                        thread::sleep(Duration::from_millis(20));
                        status = moat.child.try_wait().unwrap();
                    }
                    let log = moat.log();
                    let failure = format!(
                        "moat {args:?} did not report {endpoints} listening endpoint(s) (exit {status:?}); stdout: {:?}; log:\n{log}",
                        moat.stdout,
                    );
                    if status.is_some() && log.contains(ADDRESS_IN_USE) {
                        return Err(failure);
                    }
                    panic!("{failure}");
                }
            }
        }
        Ok(moat)
    }

    /// The next stdout line after the ready lines, waiting at most `limit` for it.
    pub fn next_stdout_line(&self, limit: Duration) -> Option<String> {
        self.later_stdout.recv_timeout(limit).ok()
    }

    /// The port of the first endpoint.
    pub fn port(&self) -> u16 {
        self.endpoints[0].1.port()
    }

    /// What moat logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 5 seconds for `needle` to appear in the log (lines are written as events
    /// happen, a moment after the client sees their effect); returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in the log:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the named signal (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "moat did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moat start` with every endpoint of `moat.toml` in the test directory.
pub const START_ALL: [&str; 4] = ["start", "--config", "moat.toml", "--all"];

/// `moat: endpoint NAME listening on SCHEME://ADDR` → (NAME, ADDR).
fn parse_ready_line(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix("moat: endpoint ")?;
    let (name, url) = rest.split_once(" listening on ")?;
    let address = url.split_once("://")?.1.trim().parse().ok()?;
    Some((name.to_string(), address))
}

/// Runs moat to completion (for startup errors) with MOAT_HOME in `dir`.
pub fn moat_output(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(dir)
        .env("MOAT_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("moat {args:?} kept running; it should have failed at startup");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
