//! What the node knows of its Tezos chain: the heads its peers announce,
//! the best of them by Octez's fitness order, and a bounded cache of the
//! block headers seen, so that it can answer the shell's requests as the
//! peer Octez expects (shell-messages spec §3–4).
//!
//! The node validates nothing: a head is what a peer announces. It takes
//! the greatest fitness (first seen on ties) and, as Octez does, ignores a
//! head whose timestamp is more than 1 s in the future.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use tezos_p2p_shell::{BlockHash, BlockHeader, BlockLocator, ChainId, Mempool, ShellMessage};
use tezos_p2p_wire::identity::PeerId;

/// At most this many headers are cached for `Get_block_headers`.
pub const HEADER_CACHE_LEN: usize = 1024;
/// And at most this many bytes of them (encoded sizes).
pub const HEADER_CACHE_BYTES: usize = 16 << 20;
/// How far in the future a head's timestamp may be (Octez's clock drift).
const MAX_CLOCK_DRIFT: Duration = Duration::from_secs(1);
/// New best heads waiting for a slow `/monitor/heads` reader.
const HEADS_BACKLOG: usize = 64;

/// A block header with its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `header.hash()`.
    pub hash: BlockHash,
    /// The header.
    pub header: BlockHeader,
}

impl Head {
    /// Octez's JSON of a block header with its hash (`/monitor/heads`).
    pub fn json(&self) -> Value {
        let mut v = serde_json::to_value(&self.header).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            let mut with_hash = serde_json::Map::with_capacity(m.len() + 1);
            with_hash.insert("hash".into(), json!(self.hash.to_string()));
            with_hash.append(m);
            return Value::Object(with_hash);
        }
        v
    }
}

/// A connected peer's latest head.
#[derive(Debug, Clone)]
pub struct PeerHead {
    /// The head's hash.
    pub hash: BlockHash,
    /// Its level.
    pub level: i32,
    /// Its timestamp (seconds).
    pub timestamp: i64,
    /// Its fitness.
    pub fitness: tezos_p2p_shell::Fitness,
    /// When the node received it.
    pub received_at: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    best: Option<Arc<Head>>,
    cache: HashMap<BlockHash, Arc<Head>>,
    /// Cache insertion order, oldest first, with encoded sizes.
    order: VecDeque<(BlockHash, usize)>,
    cache_bytes: usize,
    peers: HashMap<PeerId, PeerHead>,
}

/// What the node answers to a shell message.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing.
    None,
    /// These messages, to the sender.
    Send(Vec<ShellMessage>),
}

/// The node's view of its chain.
#[derive(Debug)]
pub struct Chain {
    /// The chain the node is on.
    pub chain_id: ChainId,
    state: Mutex<State>,
    heads: broadcast::Sender<Arc<Head>>,
}

impl Chain {
    /// Nothing known yet.
    pub fn new(chain_id: ChainId) -> Chain {
        Chain {
            chain_id,
            state: Mutex::new(State::default()),
            heads: broadcast::channel(HEADS_BACKLOG).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The best head known.
    pub fn best(&self) -> Option<Arc<Head>> {
        self.state().best.clone()
    }

    /// Each new best head, as it is chosen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Head>> {
        self.heads.subscribe()
    }

    /// The connected peers' latest heads.
    pub fn peer_heads(&self) -> Vec<(PeerId, PeerHead)> {
        let mut v: Vec<_> = self
            .state()
            .peers
            .iter()
            .map(|(p, h)| (*p, h.clone()))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// A cached header.
    #[cfg(test)]
    pub fn header(&self, hash: &BlockHash) -> Option<Arc<Head>> {
        self.state().cache.get(hash).cloned()
    }

    /// How many headers are cached.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.state().cache.len()
    }

    /// Forgets a peer's head when its connection ends.
    pub fn forget_peer(&self, peer: &PeerId) {
        self.state().peers.remove(peer);
    }

    /// The first message of every connection (spec §4).
    pub fn greeting(&self) -> ShellMessage {
        ShellMessage::GetCurrentBranch(self.chain_id)
    }

    /// Takes in `msg` from `peer` at `now` and says what to answer. Every
    /// message that decoded is accepted without penalty: requests the node
    /// cannot serve and messages about other chains are ignored.
    pub fn handle(&self, peer: PeerId, msg: &ShellMessage, now: SystemTime) -> Reply {
        let ours = |c: &ChainId| *c == self.chain_id;
        match msg {
            ShellMessage::GetCurrentBranch(c) if ours(c) => match self.best() {
                Some(best) => Reply::Send(vec![ShellMessage::CurrentBranch {
                    chain_id: self.chain_id,
                    locator: BlockLocator {
                        current_head: best.header.clone(),
                        history: vec![],
                    },
                }]),
                None => Reply::None,
            },
            ShellMessage::GetCurrentHead(c) if ours(c) => match self.best() {
                Some(best) => Reply::Send(vec![ShellMessage::CurrentHead {
                    chain_id: self.chain_id,
                    header: best.header.clone(),
                    mempool: Mempool::default(),
                }]),
                None => Reply::None,
            },
            ShellMessage::CurrentBranch { chain_id, locator } if ours(chain_id) => {
                self.observe(peer, &locator.current_head, now);
                Reply::None
            }
            ShellMessage::CurrentHead {
                chain_id, header, ..
            } if ours(chain_id) => {
                self.observe(peer, header, now);
                Reply::None
            }
            ShellMessage::GetBlockHeaders(hashes) => {
                let st = self.state();
                let found: Vec<_> = hashes
                    .iter()
                    .filter_map(|h| st.cache.get(h))
                    .map(|h| ShellMessage::BlockHeader(h.header.clone()))
                    .collect();
                if found.is_empty() {
                    Reply::None
                } else {
                    Reply::Send(found)
                }
            }
            _ => Reply::None,
        }
    }

    /// Records `header` as `peer`'s head: cached, and the best head if its
    /// fitness is greater than the best's. Returns whether it became the
    /// best.
    pub fn observe(&self, peer: PeerId, header: &BlockHeader, now: SystemTime) -> bool {
        let limit = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(MAX_CLOCK_DRIFT)
            .as_secs();
        if header.timestamp > 0 && header.timestamp as u64 > limit {
            // Octez: `Future_block`, ignored without penalty.
            return false;
        }
        let head = Arc::new(Head {
            hash: header.hash(),
            header: header.clone(),
        });
        let mut st = self.state();
        st.peers.insert(
            peer,
            PeerHead {
                hash: head.hash,
                level: header.level,
                timestamp: header.timestamp,
                fitness: header.fitness.clone(),
                received_at: now,
            },
        );
        cache(&mut st, &head);
        let better = st
            .best
            .as_ref()
            .is_none_or(|b| header.fitness > b.header.fitness);
        if better {
            st.best = Some(head.clone());
            drop(st);
            let _ = self.heads.send(head);
        }
        better
    }

    /// `/network/heads`: each connected peer's latest head.
    pub fn peer_heads_json(&self) -> Value {
        Value::Array(
            self.peer_heads()
                .into_iter()
                .map(|(peer, h)| {
                    json!({
                        "peer_id": peer.to_string(),
                        "hash": h.hash.to_string(),
                        "level": h.level,
                        "timestamp": crate::octez_time::octez_protocol_time(h.timestamp),
                        "fitness": h.fitness,
                        "received_at": crate::octez_time::octez_time(h.received_at),
                    })
                })
                .collect(),
        )
    }
}

/// Adds `head` to the cache, evicting the oldest headers beyond the
/// bounds. A header larger than the whole byte budget is not kept.
fn cache(st: &mut State, head: &Arc<Head>) {
    if st.cache.contains_key(&head.hash) {
        return;
    }
    let size = head.header.encoded_len();
    if size > HEADER_CACHE_BYTES {
        return;
    }
    while st.order.len() >= HEADER_CACHE_LEN || st.cache_bytes + size > HEADER_CACHE_BYTES {
        let Some((old, old_size)) = st.order.pop_front() else {
            break;
        };
        st.cache.remove(&old);
        st.cache_bytes -= old_size;
    }
    // The head is shared with the best-head slot and the monitor: no copy.
    st.cache.insert(head.hash, head.clone());
    st.order.push_back((head.hash, size));
    st.cache_bytes += size;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tezos_p2p_shell::Fitness;

    fn header(level: i32, fitness: &[&[u8]], timestamp: i64) -> BlockHeader {
        BlockHeader {
            level,
            proto: 1,
            predecessor: BlockHash::from([level as u8; 32]),
            timestamp,
            validation_pass: 4,
            operations_hash: tezos_p2p_shell::OperationListListHash::from([0; 32]),
            fitness: Fitness(fitness.iter().map(|f| f.to_vec()).collect()),
            context: tezos_p2p_shell::ContextHash::from([1; 32]),
            protocol_data: vec![level as u8; 10],
        }
    }

    fn chain() -> Chain {
        Chain::new("NetXdQprcVkpaWU".parse().unwrap())
    }

    const P1: PeerId = PeerId([1; 16]);
    const P2: PeerId = PeerId([2; 16]);

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn nothing_is_answered_before_a_head_is_known() {
        let c = chain();
        let id = c.chain_id;
        assert_eq!(
            c.handle(P1, &ShellMessage::GetCurrentBranch(id), now()),
            Reply::None
        );
        assert_eq!(
            c.handle(P1, &ShellMessage::GetCurrentHead(id), now()),
            Reply::None
        );
        assert_eq!(c.greeting(), ShellMessage::GetCurrentBranch(id));
    }

    #[test]
    fn the_best_head_is_the_greatest_fitness_first_seen_on_ties() {
        let c = chain();
        let id = c.chain_id;
        let mut rx = c.subscribe();
        let a = header(10, &[b"\x02", b"\x00\x00\x00\x0a"], 1_600_000_000);
        let b = header(11, &[b"\x02", b"\x00\x00\x00\x0b"], 1_600_000_060);
        let tie = header(12, &[b"\x02", b"\x00\x00\x00\x0b"], 1_600_000_120);
        let lower = header(13, &[b"\x01", b"\x00\x00\x00\xff"], 1_600_000_180);
        let msg = |h: &BlockHeader| ShellMessage::CurrentHead {
            chain_id: id,
            header: h.clone(),
            mempool: Mempool::default(),
        };
        c.handle(P1, &msg(&a), now());
        c.handle(P2, &msg(&b), now());
        c.handle(P1, &msg(&tie), now());
        c.handle(P2, &msg(&lower), now());
        assert_eq!(c.best().unwrap().hash, b.hash());
        assert_eq!(rx.try_recv().unwrap().hash, a.hash());
        assert_eq!(rx.try_recv().unwrap().hash, b.hash());
        assert!(
            rx.try_recv().is_err(),
            "ties and lower fitness are not new heads"
        );
        // Each peer's latest head is kept, best or not.
        let heads = c.peer_heads();
        assert_eq!(heads[0].1.hash, tie.hash());
        assert_eq!(heads[1].1.hash, lower.hash());
        c.forget_peer(&P1);
        assert_eq!(c.peer_heads().len(), 1);
        // The answers carry the best head.
        assert_eq!(
            c.handle(P1, &ShellMessage::GetCurrentHead(id), now()),
            Reply::Send(vec![ShellMessage::CurrentHead {
                chain_id: id,
                header: b.clone(),
                mempool: Mempool::default()
            }])
        );
        match c.handle(P1, &ShellMessage::GetCurrentBranch(id), now()) {
            Reply::Send(m) => match &m[..] {
                [ShellMessage::CurrentBranch { locator, .. }] => {
                    assert_eq!(locator.current_head, b);
                    assert!(locator.history.is_empty());
                }
                other => panic!("unexpected {other:?}"),
            },
            Reply::None => panic!("no answer"),
        }
    }

    #[test]
    fn other_chains_and_future_heads_are_ignored() {
        let c = chain();
        let other: ChainId = "NetXjD3HPJJjmcd".parse().unwrap();
        let h = header(1, &[b"\x01"], 1_600_000_000);
        let msg = ShellMessage::CurrentHead {
            chain_id: other,
            header: h.clone(),
            mempool: Mempool::default(),
        };
        assert_eq!(c.handle(P1, &msg, now()), Reply::None);
        assert!(c.best().is_none());
        assert_eq!(
            c.handle(P1, &ShellMessage::GetCurrentHead(other), now()),
            Reply::None
        );
        let future = header(2, &[b"\x01"], 1_700_000_002);
        assert!(!c.observe(P1, &future, now()));
        assert!(c.best().is_none());
        let almost = header(2, &[b"\x01"], 1_700_000_001);
        assert!(c.observe(P1, &almost, now()));
    }

    #[test]
    fn block_headers_are_served_from_a_bounded_cache() {
        let c = chain();
        let first = header(0, &[b"\x01"], 1_600_000_000);
        c.observe(P1, &first, now());
        let unknown = BlockHash::from([9; 32]);
        assert_eq!(
            c.handle(
                P1,
                &ShellMessage::GetBlockHeaders(vec![first.hash(), unknown]),
                now()
            ),
            Reply::Send(vec![ShellMessage::BlockHeader(first.clone())])
        );
        assert_eq!(
            c.handle(P1, &ShellMessage::GetBlockHeaders(vec![unknown]), now()),
            Reply::None
        );
        for level in 1..=HEADER_CACHE_LEN as i32 + 10 {
            let mut h = header(level, &[b"\x01"], 1_600_000_000);
            h.protocol_data = level.to_be_bytes().to_vec();
            c.observe(P1, &h, now());
        }
        assert_eq!(c.cached(), HEADER_CACHE_LEN);
        assert!(c.header(&first.hash()).is_none(), "the oldest is evicted");
    }
}
