//! Full authenticated sessions per second over loopback: ours (PoW 0,
//! connect + authenticate + accept on both sides + close) against libp2p's
//! TCP transport upgraded with multistream-select + noise XX (no muxer),
//! and raw TCP connect + accept + close as the ceiling.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, Version};
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr, Transport as _};
use libp2p::identity::Keypair;
use libp2p::{noise, tcp, PeerId};
use tokio::io::AsyncReadExt as _;

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};

use crate::common::*;

pub const BENCH: &str = "handshake";

/// Result of one timed run: completed sessions/s and errors.
pub struct Run {
    pub rate: f64,
    pub errors: u64,
    /// CPU time of this process (both sides) over wall time.
    pub cores: f64,
}

/// Runs `conc` client loops of `session` until `secs` have passed.
async fn drive<F, Fut>(conc: usize, secs: f64, session: F) -> (u64, u64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let deadline = start + Duration::from_secs_f64(secs);
    let (ok, err) = run_clients(conc, deadline, session).await;
    let t = start.elapsed().as_secs_f64();
    CORES.store(((cpu_secs() - cpu0) / t * 1000.0) as u64, Ordering::Relaxed);
    (ok, err, t)
}

/// Cores kept busy during the last `drive`, in thousandths.
static CORES: AtomicU64 = AtomicU64::new(0);

fn cores_busy() -> f64 {
    CORES.load(Ordering::Relaxed) as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// Ours.

pub async fn ours(conc: usize, secs: f64) -> Run {
    let t = transport();
    let listener = t
        .bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1024)
        .await
        .unwrap();
    let saddr = listener.local_addr();
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (cid, sid) = (identity(1), identity(2));
    let (server, server_errors) = spawn_handshake_server(listener, sched.clone(), sid);
    let (ok, err, elapsed) = drive(conc, secs, move || {
        let (t, sched, cid) = (t.clone(), sched.clone(), cid.clone());
        async move {
            let c = ours_dial(&t, &sched, &cid, saddr).await?;
            c.close(false).await;
            Ok(())
        }
    })
    .await;
    server.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Run {
        rate: ok as f64 / elapsed,
        errors: err + server_errors.load(Ordering::Relaxed),
        cores: cores_busy(),
    }
}

// ---------------------------------------------------------------------------
// libp2p: tcp::tokio::Transport, then multistream-select ("/noise", V1Lazy as
// the SwarmBuilder uses) and noise XX with an ed25519 identity, exactly what
// `upgrade(V1Lazy).authenticate(noise)` does, minus the muxer.

type NoiseOut = noise::Output<libp2p::core::Negotiated<tcp::tokio::TcpStream>>;

fn noise_transport(
    key: &Keypair,
    backlog: u32,
) -> libp2p::core::transport::Boxed<(PeerId, NoiseOut)> {
    let cfg = noise::Config::new(key).unwrap();
    tcp::tokio::Transport::new(tcp::Config::new().listen_backlog(backlog))
        .and_then(move |conn, endpoint: ConnectedPoint| {
            let cfg = cfg.clone();
            async move {
                if endpoint.is_dialer() {
                    let (p, io) =
                        multistream_select::dialer_select_proto(conn, ["/noise"], Version::V1Lazy)
                            .await
                            .map_err(std::io::Error::other)?;
                    cfg.upgrade_outbound(io, p)
                        .await
                        .map_err(std::io::Error::other)
                } else {
                    let (p, io) = multistream_select::listener_select_proto(conn, ["/noise"])
                        .await
                        .map_err(std::io::Error::other)?;
                    cfg.upgrade_inbound(io, p)
                        .await
                        .map_err(std::io::Error::other)
                }
            }
        })
        .boxed()
}

pub async fn libp2p_noise(conc: usize, secs: f64) -> Run {
    let server_key = Keypair::generate_ed25519();
    let client_key = Keypair::generate_ed25519();
    let mut server = noise_transport(&server_key, 1024);
    server
        .listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr: Multiaddr = loop {
        match poll_fn(|cx| Pin::new(&mut server).poll(cx)).await {
            TransportEvent::NewAddress { listen_addr, .. } => break listen_addr,
            _ => continue,
        }
    };
    let server_errors = Arc::new(AtomicU64::new(0));
    let server_task = tokio::spawn({
        let server_errors = server_errors.clone();
        async move {
            loop {
                if let TransportEvent::Incoming { upgrade, .. } =
                    poll_fn(|cx| Pin::new(&mut server).poll(cx)).await
                {
                    let server_errors = server_errors.clone();
                    tokio::spawn(async move {
                        match upgrade.await {
                            Ok((_peer, mut out)) => {
                                // Wait for the client's close, then close.
                                let mut b = [0u8; 64];
                                while let Ok(n) = out.read(&mut b).await {
                                    if n == 0 {
                                        break;
                                    }
                                }
                                let _ = out.close().await;
                            }
                            Err(_) => {
                                server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        }
    });
    // One transport per client loop (dialing needs `&mut`).
    let clients: Vec<_> = (0..conc)
        .map(|_| Arc::new(tokio::sync::Mutex::new(noise_transport(&client_key, 128))))
        .collect();
    let next = Arc::new(AtomicU64::new(0));
    let (ok, err, elapsed) = drive(conc, secs, move || {
        let i = next.fetch_add(1, Ordering::Relaxed) as usize % clients.len();
        let tr = clients[i].clone();
        let addr = addr.clone();
        async move {
            let dial = tr
                .lock()
                .await
                .dial(
                    addr,
                    DialOpts {
                        role: Endpoint::Dialer,
                        port_use: PortUse::New,
                    },
                )
                .map_err(|e| e.to_string())?;
            let (_peer, mut out) = dial.await.map_err(|e| e.to_string())?;
            out.close().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await;
    server_task.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Run {
        rate: ok as f64 / elapsed,
        errors: err + server_errors.load(Ordering::Relaxed),
        cores: cores_busy(),
    }
}

// ---------------------------------------------------------------------------
// Raw TCP: connect, accept, client closes, server reads EOF and closes.

pub async fn raw_tcp(conc: usize, secs: f64) -> Run {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1024).unwrap();
    let saddr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        }
    });
    let (ok, err, elapsed) = drive(conc, secs, move || async move {
        let c = tokio::net::TcpStream::connect(saddr)
            .await
            .map_err(|e| e.to_string())?;
        c.set_nodelay(true).map_err(|e| e.to_string())?;
        drop(c);
        Ok(())
    })
    .await;
    server.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Run {
        rate: ok as f64 / elapsed,
        errors: err,
        cores: cores_busy(),
    }
}

pub async fn run(report: &mut Report, reps: usize, secs: f64) {
    eprintln!(
        "== handshake ({secs} s per run, {reps} runs interleaved; load {}) ==",
        loadavg()
    );
    for conc in [1usize, 16] {
        let metric = format!("sessions_c{conc}");
        for rep in 0..reps {
            for imp in ["tezos-p2p", "libp2p-noise", "raw-tcp"] {
                if !selected(imp) {
                    continue;
                }
                let r = match imp {
                    "tezos-p2p" => ours(conc, secs).await,
                    "libp2p-noise" => libp2p_noise(conc, secs).await,
                    _ => raw_tcp(conc, secs).await,
                };
                eprintln!(
                    "  run {rep} c={conc:2} {imp:14}: {:8.0} sessions/s ({} errors, {:.2} cores busy, load {})",
                    r.rate,
                    r.errors,
                    r.cores,
                    loadavg()
                );
                report.add(BENCH, imp, &format!("cores_busy_c{conc}"), "cores", r.cores);
                report.add(BENCH, imp, &metric, "sessions/s", r.rate);
                report.add(
                    BENCH,
                    imp,
                    &format!("errors_c{conc}"),
                    "count",
                    r.errors as f64,
                );
                // Let TIME_WAIT sockets and the runtime settle.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let ratio = report.median(BENCH, "tezos-p2p", &metric)
            / report.median(BENCH, "libp2p-noise", &metric);
        report.goal(
            BENCH,
            format!("tezos-p2p / libp2p-noise, concurrency {conc}"),
            ratio,
            "x",
            ">= 3x",
            ratio >= 3.0,
        );
    }
}
