//! The servers moat forwards to: in-process HTTP and echo upstreams, nginx and Python processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::ports::{ADDRESS_IN_USE, with_free_port};

/// A minimal HTTP/1.1 upstream: answers every request with `200` and body
/// `hello from upstream <path>`; `/slow` waits 2 seconds first; `/headers` answers with the
/// request's headers, one `name: value` line each.
pub fn start_http_upstream() -> SocketAddr {
    start_observed_http_upstream().0
}

/// [`start_http_upstream`], with a count of the requests whose head it has read (counted
/// before `/slow` starts waiting, so a test can tell when a request is in flight upstream).
pub fn start_observed_http_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                let _ = serve_http(stream, &counter);
            });
        }
    });
    (address, requests)
}

/// A request's path and its headers (names in lower case), as [`read_request_head`] reads them.
pub type RequestHead = (String, Vec<(String, String)>);

/// Reads one HTTP/1.1 request head. `None` when the connection ends before a request line.
pub fn read_request_head(reader: &mut impl BufRead) -> std::io::Result<Option<RequestHead>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Ok(Some((path, headers)))
}

fn serve_http(stream: TcpStream, requests: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some((path, headers)) = read_request_head(&mut reader)? {
        requests.fetch_add(1, Ordering::SeqCst);
        if path == "/slow" {
            thread::sleep(Duration::from_secs(2));
        }
        let body = if path == "/headers" {
            // What the gateway sent, one `name: value` line per header, names in lower case.
            headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect()
        } else {
            format!("hello from upstream {path}")
        };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        writer.flush()?;
    }
    Ok(())
}

/// A TCP echo server: every connection gets back what it sends, and a half-close once the
/// client half-closes.
pub fn start_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    address
}

/// A real upstream process (nginx, a Python server) on 127.0.0.1; killed when dropped.
pub struct UpstreamProcess {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl UpstreamProcess {
    /// Waits until this process listens on its port (at most 15 s). `Err` when it exited
    /// because another one took the port (its `log` says so), for [`with_free_port`] to retry.
    /// "This process": a port that merely accepts connections may be the other one's.
    fn wait_ready(mut self, what: &str, log: &Path) -> Result<UpstreamProcess, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listens_on(self.child.id(), self.port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let failure = format!("{what} exited before listening ({status}):\n{log}");
                if log.contains(ADDRESS_IN_USE) {
                    return Err(failure);
                }
                panic!("{failure}");
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(self)
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (or on any address),
/// read from `/proc/net/tcp` (its inode) and `/proc/PID/fd` (the process's sockets).
fn listens_on(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    // Columns: sl local_address rem_address st ... inode (10th); state 0A is LISTEN.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && local.contains(&fields[1].to_string()))
        .filter(|fields| fields[3] == "0A")
        .map(|fields| format!("socket:[{}]", fields[9]))
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

/// Starts nginx (Debian's package; `.ci/run` installs it) in `dir` with `server_body` as the
/// body of one `server { listen 127.0.0.1:PORT; ... }` block: a real upstream that resolves
/// paths as nginx does (percent-decoding, dot segments, merged slashes) before choosing a
/// location.
pub fn start_nginx(dir: &Path, server_body: &str) -> UpstreamProcess {
    with_free_port("nginx", |port| try_start_nginx(dir, server_body, port))
}

fn try_start_nginx(dir: &Path, server_body: &str, port: u16) -> Result<UpstreamProcess, String> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    let p = prefix.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n\
         access_log off;\ndefault_type text/plain;\nclient_body_temp_path {p}/tmp/body;\n\
         proxy_temp_path {p}/tmp/proxy;\nfastcgi_temp_path {p}/tmp/fastcgi;\n\
         uwsgi_temp_path {p}/tmp/uwsgi;\nscgi_temp_path {p}/tmp/scgi;\n\
         server {{\nlisten 127.0.0.1:{port};\n{server_body}\n}}\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    // nginx appends; a bind error of an earlier try must not be read as this one's.
    let _ = std::fs::remove_file(prefix.join("error.log"));
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|candidate| Path::new(candidate).exists())
        .unwrap_or("nginx");
    let child = Command::new(nginx)
        .args(["-p", &p.to_string(), "-e", &format!("{p}/error.log"), "-c"])
        .arg(prefix.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts (apt-get install nginx)");
    UpstreamProcess { child, port }.wait_ready("nginx", &prefix.join("error.log"))
}

/// Runs `python3 ARGS` in `dir` with `{port}` in ARGS replaced by a free port, and waits for it
/// to listen there.
pub fn start_python(dir: &Path, args: &[&str]) -> UpstreamProcess {
    with_free_port("python3", |port| try_start_python(dir, args, port))
}

fn try_start_python(dir: &Path, args: &[&str], port: u16) -> Result<UpstreamProcess, String> {
    let log = dir.join("python-upstream.log");
    let args: Vec<String> = args
        .iter()
        .map(|arg| arg.replace("{port}", &port.to_string()))
        .collect();
    let child = Command::new("python3")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("python3 starts");
    UpstreamProcess { child, port }.wait_ready(&format!("python3 {args:?}"), &log)
}
