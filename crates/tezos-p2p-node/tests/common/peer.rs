//! A test peer for the end-to-end tests: a pool of this library over TCP
//! in its own runtime, with raw application messages so that it can also
//! send what no encoder would write. Included by the node crate's tests and
//! by the conformance crate's (`#[path]`).

use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::limits::Limits;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::{Config, Net, PeerConnection};
use tezos_p2p_shell::ShellMessage;
use tezos_p2p_wire::identity::{Identity, PowSearch, PowTarget};
use tezos_p2p_wire::message::{AppMessage, OctezMetadata, RawMessage};
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

use super::NodeProc;

pub type PeerNet = Net<RawMessage, OctezMetadata, ()>;

/// A test peer: its own runtime and pool.
pub struct Peer {
    pub rt: tokio::runtime::Runtime,
    pub net: PeerNet,
}

impl Peer {
    pub fn new(chain_name: &str, ddb_versions: &[u16], disable_mempool: bool) -> Peer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pow = PowTarget::new(0.0).unwrap();
        let identity = Identity::generate(&pow, &PowSearch::default(), |_| {}).unwrap();
        let config = {
            let mut config = Config::new(
                Arc::new(identity),
                SupportedVersions {
                    distributed_db_versions: ddb_versions.to_vec(),
                    ..SupportedVersions::octez(ChainName::from(chain_name))
                },
            );
            config.listening_addr = None;
            config.proof_of_work_target = pow;
            config.metadata = OctezMetadata {
                disable_mempool,
                private_node: false,
            };
            config.disable_peer_discovery = true;
            config.transport = Transport::Tcp(TcpOptions::default());
            config
        };
        let net: PeerNet = rt.block_on(Net::create(config, Limits::default())).unwrap();
        {
            let _in_runtime = rt.enter();
            net.activate();
        }
        Peer { rt, net }
    }

    pub fn connect(&self, node: &NodeProc) -> Arc<PeerConnection<RawMessage, OctezMetadata>> {
        self.rt
            .block_on(self.net.connect_with(
                node.p2p.into(),
                tezos_p2p::ConnectOptions::default().timeout(Duration::from_secs(10)),
            ))
            .unwrap()
    }

    pub fn send(&self, conn: &PeerConnection<RawMessage, OctezMetadata>, msg: RawMessage) {
        self.rt.block_on(self.net.send(conn, msg)).unwrap();
    }

    pub fn send_shell(&self, conn: &PeerConnection<RawMessage, OctezMetadata>, msg: &ShellMessage) {
        let mut body = Vec::new();
        msg.encode_body(&mut body).unwrap();
        self.send(
            conn,
            RawMessage {
                tag: msg.tag(),
                body,
            },
        );
    }

    /// The next application message (10 s at most).
    pub fn recv(&self, conn: &PeerConnection<RawMessage, OctezMetadata>) -> RawMessage {
        self.rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), self.net.recv(conn)).await
            })
            .expect("a message within 10 s")
            .expect("the connection is up")
            .1
    }

    pub fn recv_shell(&self, conn: &PeerConnection<RawMessage, OctezMetadata>) -> ShellMessage {
        let m = self.recv(conn);
        ShellMessage::decode(m.tag, &m.body).expect("the node sends valid shell messages")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.rt.block_on(self.net.shutdown());
    }
}
