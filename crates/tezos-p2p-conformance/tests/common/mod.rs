//! Helpers of the end-to-end conformance test (`node_shell.rs`): the node
//! binary, temporary directories, free ports, the binary as a child process
//! and a tiny HTTP/1.1 client. The same helpers as the node crate's
//! `tests/common/mod.rs`, except where the binary comes from: this crate
//! cannot name another package's binary (`CARGO_BIN_EXE_*` is only set for
//! the package that has it), so it takes the one built beside this test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The crates whose sources make up the node binary.
const NODE_SOURCES: [&str; 4] = [
    "tezos-p2p-wire/src",
    "tezos-p2p-shell/src",
    "tezos-p2p/src",
    "tezos-p2p-node/src",
];

/// The node binary: `TEZOS_P2P_NODE_BIN` if set, else the one Cargo built
/// in this test's target directory (`target/<profile>/tezos-p2p-node`,
/// built by `cargo test --workspace` before any test runs). A missing
/// binary, or one older than a source file of the node or of the crates it
/// is made of, fails the test: it is never skipped, and never run against
/// an old build.
pub fn node_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TEZOS_P2P_NODE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/tezos-p2p-node
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .join(format!("tezos-p2p-node{}", std::env::consts::EXE_SUFFIX));
    let how = "run `cargo test --workspace` (or `cargo build -p tezos-p2p-node` first); \
               this test must not be skipped";
    let built = bin
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("no node binary at {} ({e}): {how}", bin.display()));
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("this crate is in crates/");
    for dir in NODE_SOURCES {
        if let Some((file, modified)) = newest(&crates.join(dir)) {
            assert!(
                modified <= built,
                "the node binary {} is older than {}: {how}",
                bin.display(),
                file.display()
            );
        }
    }
    bin
}

/// The most recently modified file under `dir`, with its time.
fn newest(dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut best: Option<(PathBuf, SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest(&path)
        } else {
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            Some((path, modified))
        };
        if let Some(found) = found {
            if best.as_ref().is_none_or(|(_, t)| found.1 > *t) {
                best = Some(found);
            }
        }
    }
    best
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "tezos-p2p-conformance-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
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

/// A `run` node as a child process, killed on drop.
pub struct NodeProc {
    pub child: Child,
    pub rpc: SocketAddr,
    pub p2p: SocketAddr,
}

impl NodeProc {
    /// Starts `run --data-dir DIR --expected-pow 0` on fresh ports, plus
    /// `extra`, and waits until its RPC answers.
    pub fn start(dir: &Path, extra: &[String]) -> NodeProc {
        let p2p: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
        args.extend(extra.iter().cloned());
        let child = Command::new(node_bin())
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let mut node = NodeProc { child, rpc, p2p };
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

/// A streamed response: its status and a reader of the chunk payloads.
pub struct Stream {
    pub status: u16,
    reader: BufReader<TcpStream>,
    buf: String,
}

impl Stream {
    pub fn open(addr: SocketAddr, path: &str) -> Stream {
        let s = send_request(addr, "GET", path, None).unwrap();
        let mut reader = BufReader::new(s);
        let (status, _headers) = read_head(&mut reader).unwrap();
        Stream {
            status,
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
