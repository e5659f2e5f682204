//! The pool's budget for partially received messages (issue 12).
//!
//! A peer can announce a large message and send its body slowly, or never
//! finish it: the bytes received so far must be kept until the message is
//! whole. Each connection's read queue bounds the messages that are
//! complete; this bounds those that are not, across all the connections
//! that share one [`MessageBudget`] (a pool's).
//!
//! A connection's read side takes room for a message larger than a chunk
//! ([`UNBUDGETED`]) as soon as its size and tag are read, for the whole
//! announced size, before it reads more of it from the socket; it gives the
//! room back once the message is whole (or when the connection ends, also
//! while it waits). When the budget is short, the connection waits: its
//! read side stops reading, so the peer is held back by TCP, and the
//! connections in line are served first come, first served as room frees
//! up. The total taken never exceeds the budget: a message larger than the
//! whole budget is let in only when nothing else holds room, and then
//! alone.
//!
//! No deadlock: a connection takes room once per message, all of it at
//! once, and needs no more to finish it; a connection that waits holds
//! none. What a connection buffers without room is bounded by the chunk
//! under way: a message of at most one chunk, or the first chunk of a
//! larger one (whose header tells its size).
//!
//! Honest small messages never wait for the budget, on any connection.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tezos_p2p_wire::crypto::MAX_CHUNK_PLAINTEXT;

/// Messages of at most this many bytes (size field included), the
/// plaintext of one chunk, take no room in the budget: a connection
/// buffers that much anyway while it opens a chunk.
pub const UNBUDGETED: usize = MAX_CHUNK_PLAINTEXT;

/// The default budget: 32 MiB, four of the largest shell messages (8 MiB)
/// at once, or a hundred of 320 KiB.
pub const DEFAULT_PARTIAL_MESSAGE_BUDGET: usize = 32 << 20;

/// A budget of bytes for partially received messages, shared by the
/// connections of a pool. Cheap to clone: clones share the budget.
#[derive(Clone)]
pub struct MessageBudget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    /// Bytes held by reservations (also in `state`, read without the lock).
    used: AtomicUsize,
    /// Connections waiting for room.
    waiting: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    used: usize,
    /// Connections waiting for room, first come, first served.
    line: VecDeque<Waiter>,
    next_ticket: u64,
}

struct Waiter {
    ticket: u64,
    waker: Option<Waker>,
}

impl fmt::Debug for MessageBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBudget")
            .field("capacity", &self.capacity())
            .field("used", &self.used())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl MessageBudget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Self {
        MessageBudget {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                used: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The budget, in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Bytes reserved now for messages under way.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Connections waiting for room now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fits(&self, st: &State, need: usize) -> bool {
        st.used == 0 || st.used.saturating_add(need) <= self.inner.capacity
    }

    fn take(&self, st: &mut State, need: usize) {
        st.used += need;
        self.inner.used.store(st.used, Ordering::Release);
    }

    /// Takes `need` bytes for `claim`'s message, or puts it in line (its
    /// waker is woken when its turn comes with room enough). Ready at once
    /// when `claim` already holds room.
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut Context<'_>,
        claim: &mut Claim,
        need: usize,
    ) -> Poll<()> {
        let ticket = match claim {
            Claim::Held(_) => return Poll::Ready(()),
            Claim::Waiting(w) => Some(w.ticket),
            Claim::None => None,
        };
        let mut st = self.state();
        let turn = match ticket {
            Some(t) => st.line.front().is_some_and(|w| w.ticket == t),
            None => st.line.is_empty(),
        };
        if turn && self.fits(&st, need) {
            if ticket.is_some() {
                st.line.pop_front();
                self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            self.take(&mut st, need);
            // The next in line may fit in what is left.
            wake_head(&st);
            drop(st);
            if let Claim::Waiting(w) = claim {
                // Its place is gone already: nothing to give back.
                w.ticket = 0;
            }
            *claim = Claim::Held(Reservation {
                budget: self.clone(),
                size: need,
            });
            return Poll::Ready(());
        }
        match ticket {
            Some(t) => {
                if let Some(w) = st.line.iter_mut().find(|w| w.ticket == t) {
                    match &w.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => w.waker = Some(cx.waker().clone()),
                    }
                }
            }
            None => {
                st.next_ticket += 1;
                let ticket = st.next_ticket;
                st.line.push_back(Waiter {
                    ticket,
                    waker: Some(cx.waker().clone()),
                });
                self.inner.waiting.fetch_add(1, Ordering::AcqRel);
                drop(st);
                *claim = Claim::Waiting(Place {
                    budget: self.clone(),
                    ticket,
                });
            }
        }
        Poll::Pending
    }

    fn release(&self, size: usize) {
        let mut st = self.state();
        st.used -= size;
        self.inner.used.store(st.used, Ordering::Release);
        wake_head(&st);
    }

    fn leave(&self, ticket: u64) {
        let mut st = self.state();
        let was_head = st.line.front().is_some_and(|w| w.ticket == ticket);
        let before = st.line.len();
        st.line.retain(|w| w.ticket != ticket);
        if st.line.len() < before {
            self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        if was_head {
            wake_head(&st);
        }
        if st.line.is_empty() && st.line.capacity() > 64 {
            st.line = VecDeque::new();
        }
    }
}

/// Wakes the first in line, which checks whether its room fits now.
fn wake_head(st: &State) {
    if let Some(waker) = st.line.front().and_then(|w| w.waker.as_ref()) {
        waker.wake_by_ref();
    }
}

/// What a connection's read side holds of the budget for its next
/// message: nothing, a place in line, or room. Dropping it gives back
/// what it holds.
#[derive(Default)]
pub(crate) enum Claim {
    /// Nothing.
    #[default]
    None,
    /// A place in line.
    Waiting(Place),
    /// Room for the message (kept for its `Drop`).
    Held(#[allow(dead_code)] Reservation),
}

impl Claim {
    /// Whether room is held.
    pub(crate) fn is_held(&self) -> bool {
        matches!(self, Claim::Held(_))
    }
}

/// A place in line, left when dropped.
pub(crate) struct Place {
    budget: MessageBudget,
    /// 0 once served.
    ticket: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.ticket != 0 {
            self.budget.leave(self.ticket);
        }
    }
}

/// Room taken from the budget, given back when dropped.
pub(crate) struct Reservation {
    budget: MessageBudget,
    size: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    fn poll(b: &MessageBudget, w: &Waker, c: &mut Claim, need: usize) -> bool {
        b.poll_reserve(&mut Context::from_waker(w), c, need)
            .is_ready()
    }

    #[test]
    fn first_come_first_served_within_the_budget() {
        let b = MessageBudget::new(100);
        let (_, w) = waker();
        let (mut a, mut c, mut d) = (Claim::None, Claim::None, Claim::None);
        assert!(poll(&b, &w, &mut a, 60));
        assert_eq!(b.used(), 60);
        let (fc, wc) = waker();
        assert!(!poll(&b, &wc, &mut c, 50));
        // d fits, but c is first in line.
        assert!(!poll(&b, &w, &mut d, 10));
        assert_eq!(b.waiting(), 2);
        drop(std::mem::take(&mut a));
        assert!(fc.0.load(Ordering::SeqCst), "the head is woken");
        assert!(poll(&b, &wc, &mut c, 50));
        assert!(poll(&b, &w, &mut d, 10));
        assert_eq!((b.used(), b.waiting()), (60, 0));
        drop((c, d));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_message_larger_than_the_budget_goes_alone() {
        let b = MessageBudget::new(100);
        let (_, w) = waker();
        let (mut a, mut big) = (Claim::None, Claim::None);
        assert!(poll(&b, &w, &mut a, 10));
        assert!(!poll(&b, &w, &mut big, 500));
        drop(std::mem::take(&mut a));
        assert!(poll(&b, &w, &mut big, 500));
        assert_eq!(b.used(), 500);
        let mut c = Claim::None;
        assert!(!poll(&b, &w, &mut c, 1));
        drop(big);
        assert!(poll(&b, &w, &mut c, 1));
    }

    #[test]
    fn leaving_the_line_wakes_the_next() {
        let b = MessageBudget::new(100);
        let (_, w) = waker();
        let mut a = Claim::None;
        assert!(poll(&b, &w, &mut a, 100));
        let (mut c, mut d) = (Claim::None, Claim::None);
        assert!(!poll(&b, &w, &mut c, 100));
        let (fd, wd) = waker();
        assert!(!poll(&b, &wd, &mut d, 100));
        drop(a);
        drop(c);
        assert!(fd.0.load(Ordering::SeqCst));
        assert_eq!(b.waiting(), 1);
        assert!(poll(&b, &wd, &mut d, 100));
        drop(d);
        assert_eq!((b.used(), b.waiting()), (0, 0));
    }
}
