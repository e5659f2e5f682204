//! Flooding application messages through a simulated network, to measure
//! how long news takes to reach the nodes: every node relays a message the
//! first time it sees it to all its other connections (as the shell
//! relays a new head), and records when that was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use tezos_p2p_wire::message::RawMessage;

use super::Simulation;

/// The application tag of gossiped messages.
pub const GOSSIP_TAG: u16 = 0x10;

#[derive(Default)]
struct State {
    /// Per message: when it was sent, and when each slot first saw it.
    messages: HashMap<u32, (Instant, Vec<Option<Duration>>)>,
}

/// Relays on every running node (started by [`Gossip::start`]; stopped when
/// dropped).
pub struct Gossip {
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
    slots: usize,
}

impl Drop for Gossip {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Gossip {
    /// Starts a relay on every running node of `sim`. Nodes that join
    /// later do not relay.
    pub fn start(sim: &Simulation) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let mut tasks = Vec::new();
        for (slot, net) in sim.nets.iter().enumerate() {
            if !sim.slots()[slot].alive {
                continue;
            }
            let net = net.clone();
            let state = Arc::clone(&state);
            tasks.push(tokio::spawn(async move {
                loop {
                    let (from, _, msg) = net.recv_any().await;
                    let Some(id) = message_id(&msg) else {
                        continue;
                    };
                    let first = {
                        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                        match st.messages.get_mut(&id) {
                            Some((sent, seen)) if seen[slot].is_none() => {
                                seen[slot] = Some(sent.elapsed());
                                true
                            }
                            _ => false,
                        }
                    };
                    if first {
                        let peer = from.peer_id();
                        let except = |c: &crate::PeerConnection<RawMessage, _>| c.peer_id() == peer;
                        let _ = net.broadcast(&msg, Some(&except), None);
                    }
                }
            }));
        }
        Gossip {
            state,
            tasks,
            slots: sim.nets.len(),
        }
    }

    /// Node `slot` sends message `id` (`size` bytes of body, at least 4)
    /// to all its connections.
    pub fn send(&self, sim: &Simulation, slot: usize, id: u32, size: usize) {
        let mut body = vec![0u8; size.max(4)];
        body[..4].copy_from_slice(&id.to_be_bytes());
        let msg = RawMessage {
            tag: GOSSIP_TAG,
            body,
        };
        {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let mut seen = vec![None; self.slots];
            seen[slot] = Some(Duration::ZERO);
            st.messages.insert(id, (Instant::now(), seen));
        }
        let _ = sim.nets[slot].broadcast(&msg, None, None);
    }

    /// When each slot first saw message `id`, after it was sent (`None`:
    /// not yet, or not a relaying node).
    pub fn arrivals(&self, id: u32) -> Vec<Option<Duration>> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.messages
            .get(&id)
            .map(|(_, seen)| seen.clone())
            .unwrap_or_default()
    }
}

fn message_id(msg: &RawMessage) -> Option<u32> {
    if msg.tag != GOSSIP_TAG {
        return None;
    }
    let b: [u8; 4] = msg.body.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The time by which a `fraction` of `total` nodes had seen a message, from
/// its arrival times (`None` if fewer did).
pub fn reach_time(arrivals: &[Option<Duration>], total: usize, fraction: f64) -> Option<Duration> {
    let mut times: Vec<Duration> = arrivals.iter().flatten().copied().collect();
    times.sort_unstable();
    let need = ((total as f64) * fraction).ceil() as usize;
    if need == 0 {
        return Some(Duration::ZERO);
    }
    times.get(need - 1).copied()
}
