//! A FIFO queue bounded by the byte size of its items (Octez's `Lwt_pipe`
//! with a size function), used for a connection's read and write queues.
//!
//! The bound is a semaphore of byte permits: a push takes the item's size
//! in permits (waiting while the queue is full) and a pop gives them back.
//! An item larger than the whole capacity counts as the capacity, so it
//! can still pass once the queue is empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

/// The sending side; cheap to clone.
pub(crate) struct Sender<T> {
    tx: mpsc::UnboundedSender<Item<T>>,
    shared: Arc<Shared>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    rx: mpsc::UnboundedReceiver<Item<T>>,
    shared: Arc<Shared>,
    /// Set once the close marker was popped.
    done: bool,
}

/// What travels in the channel: items with their cost in permits, and the
/// marker that wakes a waiting receiver when the queue is closed.
enum Item<T> {
    Value(T, u32),
    Closed,
}

struct Shared {
    permits: Semaphore,
    capacity: u32,
    closed: AtomicBool,
}

/// The queue was closed: nobody will pop (or push) any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// A queue of at most `capacity` bytes.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
    let shared = Arc::new(Shared {
        permits: Semaphore::new(capacity as usize),
        capacity,
        closed: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Sender {
            tx,
            shared: shared.clone(),
        },
        Receiver {
            rx,
            shared,
            done: false,
        },
    )
}

impl Shared {
    fn cost(&self, size: usize) -> u32 {
        size.min(self.capacity as usize).max(1) as u32
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
        self.tx.send(Item::Value(item, cost)).map_err(|_| Closed)
    }

    /// Pushes `item` if there is room now; `Ok(false)` drops it.
    pub(crate) fn try_push(&self, item: T, size: usize) -> Result<bool, Closed> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        let cost = self.shared.cost(size);
        match self.shared.permits.try_acquire_many(cost) {
            Ok(permit) => {
                permit.forget();
                self.tx.send(Item::Value(item, cost)).map_err(|_| Closed)?;
                Ok(true)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(false),
            Err(tokio::sync::TryAcquireError::Closed) => Err(Closed),
        }
    }

    /// Pushes `item` whatever the queue holds (for the final error of a
    /// reader, which must not wait for room).
    pub(crate) fn force_push(&self, item: T) -> Result<(), Closed> {
        self.tx.send(Item::Value(item, 0)).map_err(|_| Closed)
    }

    /// Closes the queue: pending and later pushes fail, pops drain what
    /// is left.
    pub(crate) fn close(&self) {
        self.shared.close();
        // Wakes a receiver waiting on an empty queue; items pushed before
        // stay ahead of the marker.
        let _ = self.tx.send(Item::Closed);
    }
}

impl Shared {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
    }
}

impl<T> Receiver<T> {
    /// Pops the oldest item, waiting for one; `None` once the queue is
    /// closed and drained, or every sender is gone.
    pub(crate) async fn pop(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        let item = self.rx.recv().await;
        self.take(item)
    }

    /// Pops the oldest item if there is one.
    pub(crate) fn try_pop(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        let item = self.rx.try_recv().ok()?;
        self.take(Some(item))
    }

    fn take(&mut self, item: Option<Item<T>>) -> Option<T> {
        match item {
            Some(Item::Value(v, cost)) => {
                self.shared.permits.add_permits(cost as usize);
                Some(v)
            }
            Some(Item::Closed) | None => {
                self.done = true;
                None
            }
        }
    }

    /// Closes the queue from the receiving side.
    pub(crate) fn close(&mut self) {
        self.shared.close();
        self.rx.close();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.close();
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
    async fn dropping_the_receiver_closes_the_queue() {
        let (tx, rx) = bounded::<u32>(10);
        drop(rx);
        assert_eq!(tx.try_push(1, 1), Err(Closed));
        assert_eq!(tx.push(1, 1).await, Err(Closed));
    }
}
