//! The README's copy-pastable `moat pki` session runs as written, so the documentation cannot
//! drift from the commands.

use std::path::Path;
use std::process::Command;

/// The body of the first ```sh block after `heading`.
fn shell_block_after(readme: &str, heading: &str) -> String {
    let section = &readme[readme.find(heading).expect("README has the heading")..];
    let start = section.find("```sh\n").expect("a ```sh block follows") + "```sh\n".len();
    let end = section[start..].find("```").expect("the block is closed");
    section[start..start + end].to_string()
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

#[test]
fn readme_opens_with_the_run_and_test_commands() {
    let readme = readme();
    let opening = shell_block_after(&readme, "# moat");
    let commands: Vec<&str> = opening
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -p moat -- demo",
            "cargo test --workspace"
        ]
    );
}

#[test]
fn readme_pki_session_runs_as_written() {
    let session = shell_block_after(&readme(), "## `moat pki`");
    let scratch = tempfile::tempdir().unwrap();
    let moat_dir = Path::new(env!("CARGO_BIN_EXE_moat")).parent().unwrap();
    let path = format!(
        "{}:{}",
        moat_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &session])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env_remove("MOAT_CA_PASSPHRASE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The session's checks print what the README promises.
    assert!(stdout.contains("alice.crt: OK"), "{stdout}");
    assert!(
        stderr.contains("PBES2, PBKDF2, AES-256-CBC")
            || stdout.contains("PBES2, PBKDF2, AES-256-CBC"),
        "{stdout}\n{stderr}"
    );
    for file in ["alice.key", "app.key", "root/ca.key", "issuing/ca.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(scratch.path().join(file))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn readme_tunnel_quickstart_runs_as_written() {
    use std::os::unix::process::CommandExt as _;
    let session = shell_block_after(&readme(), "### Try it on one machine");
    let scratch = tempfile::tempdir().unwrap();
    let moat_dir = Path::new(env!("CARGO_BIN_EXE_moat")).parent().unwrap();
    let path = format!(
        "{}:{}",
        moat_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Its own process group, so that whatever the session leaves running is stopped below.
    let session_shell = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &session])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let group = format!("-{}", session_shell.id());
    let output = session_shell.wait_with_output().unwrap();
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs: String = ["edge.log", "agent.log"]
        .iter()
        .map(|name| std::fs::read_to_string(scratch.path().join(name)).unwrap_or_default())
        .collect();
    assert!(output.status.success(), "{stdout}\n{stderr}\n{logs}");
    assert!(
        stdout.contains("joined the edge at localhost:4443"),
        "{stdout}"
    );
    assert!(
        stdout.contains("<!DOCTYPE HTML>"),
        "the service's page: {stdout}"
    );
    assert!(
        stderr.contains("alert certificate required")
            && stdout.contains("refused without a certificate"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("\"code\":\"endpoint_offline\"")
            && stdout.contains("nothing serves app.tunnel.localhost right now"),
        "{stdout}\n{logs}"
    );
}
