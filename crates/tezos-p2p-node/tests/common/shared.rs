//! The helpers of the end-to-end tests, shared: temporary directories,
//! free ports, the node binary as a child process, and a tiny HTTP/1.1
//! client.
//!
//! Two crates include this file as the `shared` module of their
//! `tests/common/mod.rs`: this one, and the unpublished
//! `tezos-p2p-conformance` (by a `#[path]` into this crate; nothing here
//! reaches outside this crate, which is packaged). The including module
//! supplies what differs between them, `node_bin()`: the binary to run.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::node_bin;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "{}-test-{tag}-{}-{}-{nanos}",
            env!("CARGO_PKG_NAME"),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(node_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `run` node as a child process, killed on drop.
pub struct NodeProc {
    pub child: Child,
    pub rpc: SocketAddr,
    pub p2p: SocketAddr,
    pub dir: PathBuf,
}

impl NodeProc {
    /// Starts `run --data-dir DIR --expected-pow 0` on fresh ports, plus
    /// `extra` (and `--network p2p-node` if `extra` names no network), and
    /// waits until its RPC answers.
    pub fn start(dir: &Path, extra: &[String]) -> NodeProc {
        let p2p: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(dir, p2p, rpc, extra)
    }

    /// As [`start`](Self::start), but with no `--network` added: the
    /// network comes from `extra` or the config file.
    pub fn start_plain(dir: &Path, extra: &[String]) -> NodeProc {
        let mut extra = extra.to_vec();
        extra.push("--no-default-network".into());
        Self::start(dir, &extra)
    }

    pub fn start_on(dir: &Path, p2p: SocketAddr, rpc: SocketAddr, extra: &[String]) -> NodeProc {
        let mut args = vec![
            "run".to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--expected-pow".into(),
            "0".into(),
            "--net-addr".into(),
            p2p.to_string(),
            "--rpc-addr".into(),
            rpc.to_string(),
        ];
        // octez-p2p-node's network (Text and Bytes) unless the test picks
        // another.
        if !extra
            .iter()
            .any(|a| a == "--network" || a == "--chain-name" || a == "--no-default-network")
        {
            args.extend(["--network".into(), "p2p-node".into()]);
        }
        args.extend(
            extra
                .iter()
                .filter(|a| *a != "--no-default-network")
                .cloned(),
        );
        // `--log-to-file` (a test option, not the binary's): logs at INFO
        // go to DIR/node.log.
        let log = args.iter().any(|a| a == "--log-to-file");
        args.retain(|a| a != "--log-to-file");
        let stderr = if log {
            Stdio::from(std::fs::File::create(dir.join("node.log")).unwrap())
        } else {
            Stdio::null()
        };
        let child = Command::new(node_bin())
            .args(&args)
            .env("RUST_LOG", if log { "info" } else { "warn" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts");
        let mut node = NodeProc {
            child,
            rpc,
            p2p,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((200, _)) = node.try_get("/network/self") {
                break;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("node exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the node's RPC never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(self.rpc, "GET", path, None)
    }

    /// A request whose answer must be JSON; returns (status, value).
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = http(self.rpc, method, path, body).expect("RPC reachable");
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        (status, v)
    }

    /// GET expecting 200.
    pub fn get(&self, path: &str) -> Value {
        let (s, v) = self.req("GET", path, None);
        assert_eq!(s, 200, "GET {path} → {s} {v}");
        v
    }

    pub fn peer_id(&self) -> String {
        self.get("/network/self").as_str().unwrap().to_owned()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true (10 s at most).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

fn send_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(s)
}

/// One HTTP/1.1 request; returns the status and the (de-chunked) body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let s = send_request(addr, method, path, body)?;
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r)?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            if n == 0 {
                break;
            }
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            out.extend_from_slice(&buf[..n]);
        }
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// A streamed response: the status, its content type, and a reader of the
/// chunk payloads.
pub struct Stream {
    pub status: u16,
    pub content_type: String,
    reader: BufReader<TcpStream>,
    buf: String,
}

impl Stream {
    pub fn open(addr: SocketAddr, path: &str) -> Stream {
        let s = send_request(addr, "GET", path, None).unwrap();
        let mut reader = BufReader::new(s);
        let (status, headers) = read_head(&mut reader).unwrap();
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Stream {
            status,
            content_type,
            reader,
            buf: String::new(),
        }
    }

    /// The next complete line of the stream's payload.
    pub fn next_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.find('\n') {
                let line = self.buf[..i].to_owned();
                self.buf.drain(..=i);
                return line;
            }
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            assert!(n > 0, "stream ended");
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

// ---------------------------------------------------------------------------
// Readings of a node process from /proc, for the robustness suite.

impl NodeProc {
    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        vm_rss_kib(self.pid())
    }

    /// The node's open file descriptors.
    pub fn fds(&self) -> usize {
        fd_count(self.pid())
    }

    /// The value of a Prometheus sample of `/metrics` (`name` or
    /// `name{labels}` as written there), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http(self.rpc, "GET", "/metrics", None).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) -> std::process::ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("the node is reaped")
    }
}

/// VmRSS of a process, in KiB (0 if it cannot be read).
pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The 1, 5 and 15 minute load averages of the machine.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
