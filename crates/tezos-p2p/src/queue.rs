//! A FIFO queue bounded by the byte size of its items (Octez's `Lwt_pipe`
//! with a size function), used for a connection's read and write queues.
//!
//! The bound is a semaphore of byte permits: a push takes the item's size
//! in permits (waiting while the queue is full) and a pop gives them back.
//! An item larger than the whole capacity counts as the capacity, so it
//! can still pass once the queue is empty. An empty queue holds no buffer,
//! so idle connections cost little.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// The sending side; cheap to clone.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side (there is exactly one).
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    permits: Semaphore,
    capacity: u32,
    /// Wakes the receiver: with one receiver, `notify_one`'s stored permit
    /// covers a push between its check and its wait.
    wake: Notify,
}

struct State<T> {
    items: VecDeque<(T, u32)>,
    closed: bool,
    senders: usize,
}

/// The queue was closed: nobody will pop (or push) any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// A queue of at most `capacity` bytes.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            senders: 1,
        }),
        permits: Semaphore::new(capacity as usize),
        capacity,
        wake: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cost(&self, size: usize) -> u32 {
        size.min(self.capacity as usize).max(1) as u32
    }

    /// Appends an item whose permits were taken.
    fn enqueue(&self, item: T, cost: u32) -> Result<(), Closed> {
        let mut st = self.state();
        if st.closed {
            return Err(Closed);
        }
        st.items.push_back((item, cost));
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    fn close(&self) -> VecDeque<(T, u32)> {
        let mut st = self.state();
        st.closed = true;
        self.permits.close();
        self.wake.notify_one();
        std::mem::take(&mut st.items)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        st.senders -= 1;
        if st.senders == 0 {
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

impl<T> Sender<T> {
    /// Pushes `item` of `size` bytes, waiting for room.
    pub(crate) async fn push(&self, item: T, size: usize) -> Result<(), Closed> {
        let cost = self.shared.cost(size);
        let permit = self
            .shared
            .permits
            .acquire_many(cost)
            .await
            .map_err(|_| Closed)?;
        permit.forget();
        self.shared.enqueue(item, cost)
    }

    /// Pushes `item` if there is room now; `Ok(false)` drops it.
    pub(crate) fn try_push(&self, item: T, size: usize) -> Result<bool, Closed> {
        let cost = self.shared.cost(size);
        match self.shared.permits.try_acquire_many(cost) {
            Ok(permit) => {
                permit.forget();
                self.shared.enqueue(item, cost)?;
                Ok(true)
            }
            Err(TryAcquireError::NoPermits) => Ok(false),
            Err(TryAcquireError::Closed) => Err(Closed),
        }
    }

    /// Pushes `item` whatever the queue holds (for the final error of a
    /// reader, which must not wait for room). Counts for nothing.
    pub(crate) fn force_push(&self, item: T) -> Result<(), Closed> {
        let mut st = self.shared.state();
        if st.closed {
            return Err(Closed);
        }
        st.items.push_back((item, 0));
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Closes the queue: pending and later pushes fail, pops drain what
    /// is left.
    pub(crate) fn close(&self) {
        let mut st = self.shared.state();
        st.closed = true;
        self.shared.permits.close();
        drop(st);
        self.shared.wake.notify_one();
    }
}

impl<T> Receiver<T> {
    /// Pops the oldest item, waiting for one; `None` once the queue is
    /// closed and drained, or every sender is gone.
    pub(crate) async fn pop(&mut self) -> Option<T> {
        loop {
            match self.try_take() {
                Ok(item) => return item,
                Err(()) => self.shared.wake.notified().await,
            }
        }
    }

    /// Whether no item is queued now.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.state().items.is_empty()
    }

    /// Pops the oldest item if there is one.
    pub(crate) fn try_pop(&mut self) -> Option<T> {
        self.try_take().ok().flatten()
    }

    /// `Ok(Some)` an item, `Ok(None)` the end, `Err` nothing yet.
    fn try_take(&mut self) -> Result<Option<T>, ()> {
        let mut st = self.shared.state();
        if let Some((item, cost)) = st.items.pop_front() {
            if st.items.is_empty() && st.items.capacity() > 16 {
                // Give a burst's memory back.
                st.items = VecDeque::new();
            }
            drop(st);
            self.shared.permits.add_permits(cost as usize);
            return Ok(Some(item));
        }
        if st.closed || st.senders == 0 {
            return Ok(None);
        }
        Err(())
    }

    /// Takes every item left, once closed.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> {
        self.shared.close().into_iter().map(|(item, _)| item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        drop(self.shared.close());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn push_waits_for_room_in_bytes() {
        let (tx, mut rx) = bounded::<u32>(10);
        tx.push(1, 6).await.unwrap();
        assert_eq!(tx.try_push(2, 6), Ok(false));
        assert_eq!(tx.try_push(3, 4), Ok(true));
        let tx2 = tx.clone();
        let pending = tokio::spawn(async move { tx2.push(4, 5).await });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        assert_eq!(rx.pop().await, Some(1));
        pending.await.unwrap().unwrap();
        assert_eq!(rx.pop().await, Some(3));
        assert_eq!(rx.pop().await, Some(4));
    }

    #[tokio::test]
    async fn an_item_larger_than_the_queue_passes_alone() {
        let (tx, mut rx) = bounded::<u32>(10);
        tx.push(1, 1000).await.unwrap();
        assert_eq!(tx.try_push(2, 1), Ok(false));
        assert_eq!(rx.pop().await, Some(1));
        assert_eq!(tx.try_push(2, 1), Ok(true));
    }

    #[tokio::test]
    async fn close_fails_pushes_and_drains_pops() {
        let (tx, mut rx) = bounded::<u32>(10);
        tx.push(1, 10).await.unwrap();
        let tx2 = tx.clone();
        let pending = tokio::spawn(async move { tx2.push(2, 1).await });
        tokio::task::yield_now().await;
        tx.close();
        assert_eq!(pending.await.unwrap(), Err(Closed));
        assert_eq!(tx.try_push(3, 1), Err(Closed));
        assert_eq!(rx.pop().await, Some(1));
        assert_eq!(rx.pop().await, None);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_receiver() {
        let (tx, mut rx) = bounded::<u32>(10);
        let waiting = tokio::spawn(async move { rx.pop().await });
        tokio::task::yield_now().await;
        tx.close();
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test]
    async fn last_sender_gone_ends_the_receiver_after_draining() {
        let (tx, mut rx) = bounded::<u32>(10);
        tx.force_push(7).unwrap();
        let waiting = tokio::spawn(async move { (rx.pop().await, rx.pop().await) });
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn dropping_the_receiver_closes_the_queue() {
        let (tx, rx) = bounded::<u32>(10);
        drop(rx);
        assert_eq!(tx.try_push(1, 1), Err(Closed));
        assert_eq!(tx.push(1, 1).await, Err(Closed));
    }

    #[tokio::test]
    async fn an_empty_queue_gives_its_buffer_back() {
        let (tx, mut rx) = bounded::<u32>(1 << 20);
        for i in 0..100 {
            tx.push(i, 1).await.unwrap();
        }
        for _ in 0..100 {
            rx.pop().await.unwrap();
        }
        assert_eq!(rx.shared.state().items.capacity(), 0);
    }
}
