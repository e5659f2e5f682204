//! A FIFO queue bounded by the byte size of its items (Octez's `Lwt_pipe`
//! with a size function), used for a connection's read and write queues.
//!
//! A queue sits between the application's tasks and the connection's one
//! driver task, and is embedded in the connection's shared state (no
//! allocation of its own):
//!
//! * the application side is async: [`Queue::push`] waits for room,
//!   [`Queue::pop`] waits for an item; both wait on one [`Notify`] that a
//!   change wakes when someone waits, and check again (as `Lwt_pipe`'s
//!   waiters do, so room that frees up goes to whichever waiting pusher it
//!   fits);
//! * the driver side is polled by hand: [`Queue::poll_pop`] and
//!   [`Queue::poll_room`] + [`Queue::push_reserved`] register the driver's
//!   waker, which every push, pop and close wakes.
//!
//! An item larger than the whole capacity counts as the capacity, so it
//! can still pass once the queue is empty. An empty queue holds no buffer,
//! so idle connections cost little.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// A queue of at most `capacity` bytes.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    capacity: u32,
    /// Wakes the application's tasks waiting in [`Queue::push`] or
    /// [`Queue::pop`].
    waiters: Notify,
}

struct State<T> {
    items: VecDeque<(T, u32)>,
    /// Bytes taken (by queued items, and by room reserved with
    /// [`Queue::poll_room`]).
    used: u32,
    /// Application tasks waiting on `waiters`: a change wakes them only
    /// if there are some.
    waiting: u32,
    closed: bool,
    /// The driver task, waiting for an item or for room.
    driver: Option<Waker>,
}

/// The queue was closed: nobody will pop (or push) any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                used: 0,
                waiting: 0,
                closed: false,
                driver: None,
            }),
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            waiters: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The room an item of `size` bytes takes.
    pub(crate) fn cost(&self, size: usize) -> u32 {
        size.min(self.capacity as usize).max(1) as u32
    }

    fn fits(&self, st: &State<T>, cost: u32) -> bool {
        u64::from(st.used) + u64::from(cost) <= u64::from(self.capacity)
    }

    /// Wakes the driver and the application's waiters after a change.
    fn changed(&self, mut st: MutexGuard<'_, State<T>>) {
        let wake = Self::to_wake(&mut st);
        drop(st);
        self.wake(wake);
    }

    /// Under the lock: whom a change must wake (the driver's waker, and
    /// whether application tasks wait).
    fn to_wake(st: &mut State<T>) -> (Option<Waker>, bool) {
        (st.driver.take(), st.waiting > 0)
    }

    /// Out of the lock: wakes what [`Queue::to_wake`] found.
    fn wake(&self, (driver, waiting): (Option<Waker>, bool)) {
        if let Some(w) = driver {
            w.wake();
        }
        if waiting {
            self.waiters.notify_waiters();
        }
    }

    /// Waits on `waiters` until `attempt` (run under the lock) gives a
    /// result. A waiter counts itself under the same lock before it
    /// sleeps, and its `Notified` is registered before that, so a change
    /// made after its last attempt always wakes it.
    async fn wait_for<R>(
        &self,
        mut attempt: impl FnMut(&Self, &mut MutexGuard<'_, State<T>>) -> Option<R>,
    ) -> R {
        /// Uncounts a waiter, also when its future is dropped.
        struct Counted<'a, T>(&'a Queue<T>);
        impl<T> Drop for Counted<'_, T> {
            fn drop(&mut self) {
                self.0.state().waiting -= 1;
            }
        }
        loop {
            // Most often there is no need to wait: try before registering.
            if let Some(r) = attempt(self, &mut self.state()) {
                return r;
            }
            let mut notified = pin!(self.waiters.notified());
            notified.as_mut().enable();
            let counted = {
                let mut st = self.state();
                if let Some(r) = attempt(self, &mut st) {
                    return r;
                }
                st.waiting += 1;
                Counted(self)
            };
            notified.await;
            drop(counted);
        }
    }

    /// Appends `item` if `cost` bytes fit (always with `force`), under the
    /// lock: `Err(item)` gives it back when they do not.
    fn enqueue_locked(&self, st: &mut State<T>, item: T, cost: u32, force: bool) -> Result<(), T> {
        if !force && !self.fits(st, cost) {
            return Err(item);
        }
        st.used += cost;
        st.items.push_back((item, cost));
        Ok(())
    }

    /// Takes the oldest item under the lock, giving its room back.
    fn dequeue_locked(st: &mut State<T>) -> Option<T> {
        let (item, cost) = st.items.pop_front()?;
        st.used -= cost;
        if st.items.is_empty() && st.items.capacity() > 16 {
            // Give a burst's memory back.
            st.items = VecDeque::new();
        }
        Some(item)
    }

    /// [`Queue::enqueue_locked`], then wakes whoever waits: `Ok(Err(item))`
    /// when it does not fit.
    fn try_enqueue(&self, item: T, cost: u32, force: bool) -> Result<Result<(), T>, Closed> {
        let mut st = self.state();
        if st.closed {
            return Err(Closed);
        }
        let pushed = self.enqueue_locked(&mut st, item, cost, force);
        if pushed.is_ok() {
            self.changed(st);
        }
        Ok(pushed)
    }

    /// Pushes `item` of `size` bytes, waiting for room.
    pub(crate) async fn push(&self, item: T, size: usize) -> Result<(), Closed> {
        let cost = self.cost(size);
        let mut item = Some(item);
        let wake = self
            .wait_for(|q, st| {
                if st.closed {
                    return Some(Err(Closed));
                }
                match q.enqueue_locked(st, item.take()?, cost, false) {
                    Ok(()) => Some(Ok(Self::to_wake(st))),
                    Err(back) => {
                        item = Some(back);
                        None
                    }
                }
            })
            .await?;
        self.wake(wake);
        Ok(())
    }

    /// Pushes `item` if there is room now; `Ok(false)` drops it.
    pub(crate) fn try_push(&self, item: T, size: usize) -> Result<bool, Closed> {
        Ok(self.try_enqueue(item, self.cost(size), false)?.is_ok())
    }

    /// Pushes `item` if there is room now, or gives it back (also when
    /// the queue is closed).
    pub(crate) fn try_push_or_return(&self, item: T, size: usize) -> Result<(), T> {
        let cost = self.cost(size);
        let mut st = self.state();
        if st.closed {
            return Err(item);
        }
        self.enqueue_locked(&mut st, item, cost, false)?;
        self.changed(st);
        Ok(())
    }

    /// Waits until an item of `size` bytes would fit (for a single pusher,
    /// which can then push it without waiting) or the queue is closed.
    pub(crate) async fn room(&self, size: usize) -> Result<(), Closed> {
        let cost = self.cost(size);
        self.wait_for(|q, st| {
            if st.closed {
                Some(Err(Closed))
            } else if q.fits(st, cost) {
                Some(Ok(()))
            } else {
                None
            }
        })
        .await
    }

    /// Whether no item is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.state().items.is_empty()
    }

    /// Whether the queue is closed and holds no item: it is over.
    pub(crate) fn is_over(&self) -> bool {
        let st = self.state();
        st.closed && st.items.is_empty()
    }

    /// Pushes `item` whatever the queue holds (for the error that ends a
    /// connection, which must not wait for room). Counts for nothing.
    pub(crate) fn force_push(&self, item: T) -> Result<(), Closed> {
        self.try_enqueue(item, 0, true)?.map_err(|_| Closed)
    }

    /// The driver's push, first step: takes room for `cost` bytes
    /// ([`Queue::cost`]), or registers the driver's waker for when a pop
    /// makes room.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>, cost: u32) -> Poll<Result<(), Closed>> {
        let mut st = self.state();
        if st.closed {
            return Poll::Ready(Err(Closed));
        }
        if !self.fits(&st, cost) {
            register(&mut st.driver, cx);
            return Poll::Pending;
        }
        st.used += cost;
        Poll::Ready(Ok(()))
    }

    /// The driver's push, second step: appends an item whose room
    /// [`Queue::poll_room`] took.
    pub(crate) fn push_reserved(&self, item: T, cost: u32) -> Result<(), Closed> {
        let mut st = self.state();
        if st.closed {
            return Err(Closed);
        }
        st.items.push_back((item, cost));
        self.changed(st);
        Ok(())
    }

    /// `Ok(Some)` an item, `Ok(None)` the end, `Err` nothing yet; with
    /// `driver`, registers its waker when there is nothing yet.
    fn take(&self, driver: Option<&mut Context<'_>>) -> Result<Option<T>, ()> {
        let mut st = self.state();
        if let Some(item) = Self::dequeue_locked(&mut st) {
            self.changed(st);
            return Ok(Some(item));
        }
        if st.closed {
            return Ok(None);
        }
        if let Some(cx) = driver {
            register(&mut st.driver, cx);
        }
        Err(())
    }

    /// Pops the oldest item, waiting for one; `None` once the queue is
    /// closed and drained.
    pub(crate) async fn pop(&self) -> Option<T> {
        let (item, wake) = self
            .wait_for(|_, st| match Self::dequeue_locked(st) {
                Some(item) => Some(Some((item, Self::to_wake(st)))),
                None if st.closed => Some(None),
                None => None,
            })
            .await?;
        self.wake(wake);
        Some(item)
    }

    /// The driver's pop: the oldest item, `None` once closed and drained.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.take(Some(cx)) {
            Ok(item) => Poll::Ready(item),
            Err(()) => Poll::Pending,
        }
    }

    /// Pops the oldest item if there is one.
    pub(crate) fn try_pop(&self) -> Option<T> {
        self.take(None).ok().flatten()
    }

    /// Closes the queue: pending and later pushes fail, pops drain what
    /// is left and then end.
    pub(crate) fn close(&self) {
        let mut st = self.state();
        st.closed = true;
        self.changed(st);
    }

    /// Closes the queue and takes every item left.
    pub(crate) fn close_and_take(&self) -> VecDeque<(T, u32)> {
        self.close();
        let mut st = self.state();
        st.used = 0;
        std::mem::take(&mut st.items)
    }
}

/// Keeps `cx`'s waker in `slot`.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;

    #[tokio::test]
    async fn push_waits_for_room_in_bytes() {
        let q = Arc::new(Queue::<u32>::new(10));
        q.push(1, 6).await.unwrap();
        assert_eq!(q.try_push(2, 6), Ok(false));
        assert_eq!(q.try_push(3, 4), Ok(true));
        let q2 = q.clone();
        let pending = tokio::spawn(async move { q2.push(4, 5).await });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        assert_eq!(q.pop().await, Some(1));
        pending.await.unwrap().unwrap();
        assert_eq!(q.pop().await, Some(3));
        assert_eq!(q.pop().await, Some(4));
        assert_eq!(q.state().used, 0);
    }

    #[tokio::test]
    async fn an_item_larger_than_the_queue_passes_alone() {
        let q = Queue::<u32>::new(10);
        q.push(1, 1000).await.unwrap();
        assert_eq!(q.try_push(2, 1), Ok(false));
        assert_eq!(q.pop().await, Some(1));
        assert_eq!(q.try_push(2, 1), Ok(true));
    }

    #[tokio::test]
    async fn close_fails_pushes_and_drains_pops() {
        let q = Arc::new(Queue::<u32>::new(10));
        q.push(1, 10).await.unwrap();
        let q2 = q.clone();
        let pending = tokio::spawn(async move { q2.push(2, 1).await });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(pending.await.unwrap(), Err(Closed));
        assert_eq!(q.try_push(3, 1), Err(Closed));
        assert_eq!(q.force_push(3), Err(Closed));
        assert_eq!(q.pop().await, Some(1));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test]
    async fn close_wakes_waiting_consumers() {
        let q = Arc::new(Queue::<u32>::new(10));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.pop().await })
            })
            .collect();
        tokio::task::yield_now().await;
        q.close();
        for w in waiting {
            assert_eq!(w.await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn every_item_reaches_one_of_several_consumers() {
        let q = Arc::new(Queue::<u32>::new(1 << 20));
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(i) = q.pop().await {
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        for i in 0..1000 {
            q.push(i, 1).await.unwrap();
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        q.close();
        let mut all = Vec::new();
        for c in consumers {
            let got = c.await.unwrap();
            // Each consumer sees its items in queue order.
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_driver_is_woken_by_a_push_and_by_close() {
        let q = Arc::new(Queue::<u32>::new(10));
        let q2 = q.clone();
        let driver = tokio::spawn(async move {
            let first = poll_fn(|cx| q2.poll_pop(cx)).await;
            let second = poll_fn(|cx| q2.poll_pop(cx)).await;
            (first, second)
        });
        tokio::task::yield_now().await;
        q.push(5, 1).await.unwrap();
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(driver.await.unwrap(), (Some(5), None));
    }

    #[tokio::test]
    async fn the_driver_waits_for_room_until_a_pop() {
        let q = Arc::new(Queue::<u32>::new(10));
        q.push(1, 8).await.unwrap();
        let q2 = q.clone();
        let driver = tokio::spawn(async move {
            let cost = q2.cost(5);
            poll_fn(|cx| q2.poll_room(cx, cost)).await.unwrap();
            q2.push_reserved(2, cost).unwrap();
        });
        tokio::task::yield_now().await;
        assert!(!driver.is_finished());
        assert_eq!(q.pop().await, Some(1));
        driver.await.unwrap();
        assert_eq!(q.pop().await, Some(2));
    }

    #[tokio::test]
    async fn a_forced_push_ignores_the_bound() {
        let q = Queue::<u32>::new(1);
        q.push(1, 1).await.unwrap();
        q.force_push(2).unwrap();
        q.close();
        assert_eq!(q.pop().await, Some(1));
        assert_eq!(q.pop().await, Some(2));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test]
    async fn a_single_pusher_waits_for_room_then_pushes_without_losing_its_item() {
        let q = Arc::new(Queue::<u32>::new(2));
        assert_eq!(q.try_push_or_return(1, 1), Ok(()));
        assert_eq!(q.try_push_or_return(2, 1), Ok(()));
        assert_eq!(q.try_push_or_return(3, 1), Err(3));
        let q2 = q.clone();
        let waiting = tokio::spawn(async move { q2.room(1).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(q.pop().await, Some(1));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(q.try_push_or_return(3, 1), Ok(()));
        assert!(!q.is_empty());
        q.close();
        assert_eq!(q.try_push_or_return(4, 1), Err(4));
        assert_eq!(q.room(1).await, Err(Closed));
        assert!(!q.is_over());
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.try_pop(), Some(3));
        assert!(q.is_empty() && q.is_over());
    }

    #[tokio::test]
    async fn an_empty_queue_gives_its_buffer_back() {
        let q = Queue::<u32>::new(1 << 20);
        for i in 0..100 {
            q.push(i, 1).await.unwrap();
        }
        for _ in 0..100 {
            q.pop().await.unwrap();
        }
        assert_eq!(q.state().items.capacity(), 0);
    }
}
