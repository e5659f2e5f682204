//! The task that runs an accepted connection: a hand-polled state machine
//! with a read side and a write side, which feed and drain the wire crate's
//! sans-IO [`ChunkReader`] and [`ChunkWriter`] and do nothing of the
//! protocol themselves.
//!
//! The read side reads from the socket straight into the reader's buffer
//! (the reader opens chunks in place there), takes the room a large message
//! needs in the message budget before reading more of it, and pushes
//! messages into the read queue, bounded in bytes (a full queue stops the
//! reading: back-pressure down to TCP). The write side pops encoded
//! messages, has the writer seal them into chunks (messages queued together
//! share chunks) and writes the output. Both go through the
//! [`IoScheduler`](crate::socket::scheduler::IoScheduler) for bandwidth
//! limits and statistics.
//!
//! Nothing but the [`Driver`] lives across a wait, and a side with nothing
//! under way keeps only its cipher (the key and its nonce): the reader or
//! writer, its buffers and the scheduler's ticket are boxed while busy and
//! dropped when idle, so an idle connection holds no buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio_util::io::poll_read_buf;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::debug;

use tezos_p2p_wire::chunk::{ChunkReader, ChunkSize, ChunkWriter};
use tezos_p2p_wire::crypto::{
    ChunkCipher, Nonce, SessionCipher, SessionKey, HEADER_LEN, MAX_CHUNK_PLAINTEXT,
};
use tezos_p2p_wire::encoding::DecodeError;
use tezos_p2p_wire::message::AppMessage;

use super::{Shared, SocketError, WriteItem, IDLE_READ};
use crate::socket::budget::{Claim, UNBUDGETED};
use crate::socket::scheduler::Ticket;
use crate::socket::transport::BoxStream;

/// How many sealed bytes the write side gathers before one write call, so
/// the kernel gets data while the rest is sealed.
const BATCH: usize = 64 << 10;

/// How far ahead the read side reads into a large message, in whole
/// chunks ([`ChunkReader::read_ahead`]): four of the largest. The receive
/// buffer holds at most this plus a chunk; and as the read-ahead stops
/// with the chunk that ends the message, it holds no more than the rest of
/// a message whose room is already taken (in the budget, if any).
const READ_AHEAD: usize = 256 << 10;

/// A bound on the steps of one poll. IO already yields when the task's
/// coop budget runs out, so this only stops a long run of steps without
/// IO (opening and handing out what one read brought); it is high because
/// a task that yields often wakes the other workers for nothing (64 cost
/// small messages ~10 % of their rate).
const STEPS_PER_POLL: usize = 1024;

/// The task that runs a connection: both sides of a hand-polled state
/// machine, so that nothing but this struct lives across a wait. What only
/// a busy side needs is boxed and dropped when the side goes idle.
pub(super) struct Driver<A: AppMessage, M> {
    shared: Arc<Shared<A, M>>,
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Dropped as soon as the connection ends.
    stream: Option<BoxStream>,
    read: ReadSide<A>,
    write: WriteSide,
    /// Why the write side failed, while the read side goes on (boxed: rare,
    /// and the driver stays small).
    write_error: Option<Box<SocketError>>,
}

impl<A: AppMessage, M> Driver<A, M> {
    /// A driver for the data phase of `cipher`'s session; `received` are
    /// the bytes read past the peer's Ack.
    pub(super) fn new(
        shared: Arc<Shared<A, M>>,
        stream: BoxStream,
        cipher: SessionCipher,
        received: &[u8],
        cancel: Option<CancellationToken>,
    ) -> Self {
        let mut read = ReadSide::Idle(cipher.receiver());
        if !received.is_empty() {
            read.busy(shared.max_message_size).reader.feed(received);
        }
        Driver {
            cancelled: cancel.map(|c| Box::pin(c.cancelled_owned())),
            stream: Some(stream),
            read,
            write: WriteSide::Idle(cipher.sender()),
            write_error: None,
            shared,
        }
    }
}

impl<A: AppMessage, M> Drop for Driver<A, M> {
    fn drop(&mut self) {
        // Aborted (closed without flushing, or the last handle dropped), or
        // dropped with the runtime.
        self.finish(Some(SocketError::ConnectionClosed));
    }
}

/// A placeholder while a side changes state.
fn no_cipher() -> ChunkCipher {
    ChunkCipher::new(SessionKey([0; 32]), Nonce([0; 24]))
}

/// The read side: the receiving cipher alone while idle, the reader and
/// what the driver needs around it while busy.
enum ReadSide<A> {
    Idle(ChunkCipher),
    Busy(Box<ReadBusy<A>>),
}

struct ReadBusy<A> {
    /// Bytes read and not yet opened, the message under way.
    reader: ChunkReader<A>,
    /// Bytes the scheduler granted for the next read (0: none yet).
    grant: usize,
    ticket: Ticket,
    /// What the next message holds of the message budget (given back
    /// when dropped).
    claim: Claim,
    /// Whether the decoder has room for the whole next message.
    reserved: bool,
}

impl<A: AppMessage> ReadSide<A> {
    /// The busy state, made from the idle one if need be.
    fn busy(&mut self, max_message_size: usize) -> &mut ReadBusy<A> {
        if let ReadSide::Idle(cipher) = self {
            let reader = ChunkReader::new(std::mem::replace(cipher, no_cipher()), max_message_size);
            *self = ReadSide::Busy(Box::new(ReadBusy {
                reader,
                grant: 0,
                ticket: Ticket::default(),
                claim: Claim::None,
                reserved: false,
            }));
        }
        match self {
            ReadSide::Busy(busy) => busy,
            ReadSide::Idle(_) => unreachable!("made busy above"),
        }
    }

    /// Back to the cipher alone, dropping the buffers.
    fn idle(&mut self) {
        if let ReadSide::Busy(busy) = std::mem::replace(self, ReadSide::Idle(no_cipher())) {
            *self = ReadSide::Idle(busy.reader.into_cipher());
        }
    }
}

/// The write side: the sending cipher alone while idle, the writer and
/// the messages under way while busy.
enum WriteSide {
    Idle(ChunkCipher),
    Busy(Box<WriteBusy>),
}

struct WriteBusy {
    /// Sealed chunks to write, and the shared chunk being filled.
    writer: ChunkWriter,
    /// Whether bytes were written since the last flush.
    wrote: bool,
    /// The message being sealed and how much of it is.
    item: Option<(WriteItem, usize)>,
    /// `write_sync` callers whose messages are all in the writer's output.
    done: Vec<oneshot::Sender<Result<(), SocketError>>>,
    grant: usize,
    ticket: Ticket,
}

impl WriteSide {
    fn busy(&mut self, chunk_size: ChunkSize) -> &mut WriteBusy {
        if let WriteSide::Idle(cipher) = self {
            let writer = ChunkWriter::new(std::mem::replace(cipher, no_cipher()), chunk_size);
            *self = WriteSide::Busy(Box::new(WriteBusy {
                writer,
                wrote: false,
                item: None,
                done: Vec::new(),
                grant: 0,
                ticket: Ticket::default(),
            }));
        }
        match self {
            WriteSide::Busy(busy) => busy,
            WriteSide::Idle(_) => unreachable!("made busy above"),
        }
    }

    fn idle(&mut self) {
        if let WriteSide::Busy(busy) = std::mem::replace(self, WriteSide::Idle(no_cipher())) {
            *self = WriteSide::Idle(busy.writer.into_cipher());
        }
    }
}

/// What one step of a side did.
enum Step {
    /// Moved on: there may be more to do at once.
    Progress,
    /// Waits for a wake-up (registered).
    Blocked,
}

impl<A: AppMessage, M> Future for Driver<A, M> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(Poll::Ready(())) = this.cancelled.as_mut().map(|c| c.as_mut().poll(cx)) {
            this.finish(Some(SocketError::ConnectionClosed));
            return Poll::Ready(());
        }
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(());
        };
        let shared = &*this.shared;
        // A side that is blocked has registered its wake-up; neither side
        // can unblock the other, so only a side still moving is stepped
        // again in this poll. A side that failed writes no more.
        let (mut write_blocked, mut read_blocked) = (this.write_error.is_some(), false);
        for _ in 0..STEPS_PER_POLL {
            if !write_blocked {
                match this.write.step(cx, stream, shared) {
                    Ok(Some(step)) => write_blocked = matches!(step, Step::Blocked),
                    Ok(None) => {
                        // A flushing close is done.
                        this.finish(None);
                        return Poll::Ready(());
                    }
                    Err(e) if !e.is_socket_failure() => {
                        // Not the socket's: the connection is unusable.
                        this.finish(Some(e));
                        return Poll::Ready(());
                    }
                    Err(e) => {
                        // The socket failed: the peer is gone (it reset
                        // the connection, say, after its last messages).
                        // What it sent before is still to be read (the
                        // kernel keeps it), so the read side goes on until
                        // it meets the end itself, which a dead socket
                        // gives it after that.
                        debug!(peer = %shared.info.peer_id, error = %e, "write side fails");
                        Self::fail_writes(&mut this.write, shared, &e);
                        this.write_error = Some(Box::new(e));
                        write_blocked = true;
                    }
                }
            }
            if !read_blocked {
                match this.read.step(cx, stream, shared) {
                    Ok(step) => read_blocked = matches!(step, Step::Blocked),
                    Err(e) => {
                        // A plain end after a failed write: the write's
                        // error says more.
                        let e = match (e, this.write_error.take()) {
                            (SocketError::ConnectionClosed, Some(w)) => *w,
                            (e, _) => e,
                        };
                        this.finish(Some(e));
                        return Poll::Ready(());
                    }
                }
            }
            if write_blocked && read_blocked {
                return Poll::Pending;
            }
        }
        // Busy: let the worker's other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<A: AppMessage, M> Driver<A, M> {
    /// Ends the connection, once: with `error`, what is pending fails and
    /// the reader gets the error; without (a flushing close), it is done.
    fn finish(&mut self, error: Option<SocketError>) {
        if self.stream.take().is_none() {
            return;
        }
        let shared = &*self.shared;
        if let ReadSide::Busy(busy) = &mut self.read {
            shared.io.forget_read(&mut busy.ticket);
        }
        self.read.idle();
        let failed = error.clone().unwrap_or(SocketError::ConnectionClosed);
        Self::fail_writes(&mut self.write, shared, &failed);
        if let Some(e) = error {
            debug!(peer = %shared.info.peer_id, error = %e, "connection ends");
            let _ = shared.read_q.force_push(Err(e));
        }
        shared.closed.store(true, Ordering::Release);
        shared.closed_notify.notify_waiters();
        shared.read_q.close();
    }

    /// Ends the write side: what is being written fails with `failed`,
    /// what is queued with [`SocketError::ConnectionClosed`], and the queue
    /// takes no more.
    fn fail_writes(write: &mut WriteSide, shared: &Shared<A, M>, failed: &SocketError) {
        let mut unsent = None;
        if let WriteSide::Busy(busy) = write {
            shared.io.forget_write(&mut busy.ticket);
            for d in busy.done.drain(..) {
                let _ = d.send(Err(failed.clone()));
            }
            unsent = busy.item.take().map(|(item, _)| item);
        }
        write.idle();
        let queued = shared.write_q.close_and_take().into_iter().map(|(i, _)| i);
        for item in unsent.into_iter().chain(queued) {
            if let Some(d) = item.done {
                let _ = d.send(Err(SocketError::ConnectionClosed));
            }
        }
    }
}

impl WriteSide {
    /// Writes what is sealed, or seals more. `Ok(None)`: the queue is
    /// closed and drained and the socket shut down (a flushing close).
    fn step<A, M>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut BoxStream,
        shared: &Shared<A, M>,
    ) -> Result<Option<Step>, SocketError> {
        let io = &shared.io;
        let queue = &shared.write_q;
        let WriteSide::Busy(busy) = self else {
            return match queue.poll_pop(cx) {
                Poll::Ready(Some(item)) => {
                    self.busy(shared.chunk_size).item = Some((item, 0));
                    Ok(Some(Step::Progress))
                }
                Poll::Ready(None) => match Pin::new(&mut *stream).poll_shutdown(cx) {
                    Poll::Ready(_) => Ok(None),
                    Poll::Pending => Ok(Some(Step::Blocked)),
                },
                Poll::Pending => Ok(Some(Step::Blocked)),
            };
        };
        let want = busy.writer.output().len();
        if want > 0 {
            if busy.grant == 0 {
                match io.poll_reserve_write(cx, &mut busy.ticket, want) {
                    Poll::Ready(n) => busy.grant = n.clamp(1, want),
                    Poll::Pending => return Ok(Some(Step::Blocked)),
                }
            }
            let out = &busy.writer.output()[..busy.grant.min(want)];
            let n = match Pin::new(&mut *stream).poll_write(cx, out) {
                Poll::Ready(r) => r.map_err(SocketError::from_io)?,
                Poll::Pending => return Ok(Some(Step::Blocked)),
            };
            if n == 0 {
                return Err(SocketError::ConnectionClosed);
            }
            io.record_write(n);
            busy.grant = 0;
            busy.wrote = true;
            busy.writer.advance(n);
            return Ok(Some(Step::Progress));
        }
        if busy.wrote || !busy.done.is_empty() {
            // All written: make sure it left, then tell `write_sync`.
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(r) => r.map_err(SocketError::from_io)?,
                Poll::Pending => return Ok(Some(Step::Blocked)),
            }
            busy.wrote = false;
            for d in busy.done.drain(..) {
                let _ = d.send(Ok(()));
            }
        }
        // Seal a batch, gathering the messages queued meanwhile: the
        // writer's packing (see `ChunkWriter`) seals a large message in
        // full chunks straight from its bytes and puts the ends of messages
        // in a chunk shared with those behind them, sealed once full or at
        // the end of the batch, so small messages cost one chunk's crypto
        // per batch rather than one each. Receivers reassemble messages
        // from the decrypted stream, whatever the chunk boundaries (wire
        // spec §5.5; Octez's reader keeps the leftover of a chunk for the
        // next message).
        while busy.writer.output().len() < BATCH {
            let Some((item, at)) = &mut busy.item else {
                match queue.try_pop() {
                    Some(item) => {
                        busy.item = Some((item, 0));
                        continue;
                    }
                    None => break,
                }
            };
            *at += busy.writer.push(&item.bytes[*at..], BATCH);
            if *at == item.bytes.len() {
                if let Some((item, _)) = busy.item.take() {
                    busy.done.extend(item.done);
                }
            }
        }
        // Everything taken goes out with this batch.
        busy.writer.flush();
        if busy.writer.is_idle() && busy.done.is_empty() && busy.item.is_none() {
            // Nothing left: an idle connection keeps no write state.
            self.idle();
        }
        Ok(Some(Step::Progress))
    }
}

impl<A: AppMessage> ReadSide<A> {
    /// Hands a decoded message to the read queue (the reader opening whole
    /// chunks until one is), takes room in the budget, or reads.
    fn step<M>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut BoxStream,
        shared: &Shared<A, M>,
    ) -> Result<Step, SocketError> {
        let io = &shared.io;
        if let ReadSide::Busy(busy) = self {
            let reader = &mut busy.reader;
            // 1. A whole message: into the read queue once there is room (a
            //    full queue stops the reading: back-pressure down to TCP).
            if let Some(size) = reader.next_size().map_err(SocketError::from_read)? {
                // Whole: no longer a partial message. (Its bytes are held
                // until there is room in the read queue, whose bound then
                // counts them.)
                let reserved = std::mem::take(&mut busy.claim).is_held();
                busy.reserved = false;
                let queue = &shared.read_q;
                let cost = queue.cost(size);
                match queue.poll_room(cx, cost) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Err(SocketError::ConnectionClosed),
                    Poll::Pending => return Ok(Step::Blocked),
                }
                // `next_size` saw the whole message: `None` cannot happen.
                let msg = reader
                    .next_message()
                    .map_err(SocketError::from_read)?
                    .ok_or(SocketError::Decoding(DecodeError::NotEnoughData))?;
                queue
                    .push_reserved(Ok(msg), cost)
                    .map_err(|_| SocketError::ConnectionClosed)?;
                if reserved {
                    // The room made for it goes back with the budget.
                    reader.shrink(UNBUDGETED);
                }
                return Ok(Step::Progress);
            }
            // 2. A message larger than a chunk takes its room in the
            //    message budget, if any, before more of it is read; while
            //    the budget is short, the connection reads nothing (the
            //    peer is held back by TCP) and keeps no read buffer. Then
            //    the decoder makes room for the whole message, so that its
            //    body is opened straight into the buffer the message keeps
            //    (no copy, no reallocation). Without a budget, that room is
            //    what the connection may buffer anyway: one message of at
            //    most `max_message_size`.
            if !busy.reserved {
                let announced = reader
                    .next_announced_size()
                    .map_err(SocketError::from_read)?;
                if let Some(total) = announced.filter(|&t| t > UNBUDGETED) {
                    if let Some(budget) = &shared.budget {
                        if budget.poll_reserve(cx, &mut busy.claim, total).is_pending() {
                            reader.release_recv_buf();
                            return Ok(Step::Blocked);
                        }
                    }
                    reader.reserve_next(MAX_CHUNK_PLAINTEXT);
                    busy.reserved = true;
                }
            }
        }
        // 3. Read: at least the rest of the chunk under way, so a large
        //    chunk takes one read rather than several, and up to
        //    `READ_AHEAD` of a large message under way (fewer reads, and
        //    fewer window updates from the kernel); an idle connection
        //    reads into a stack buffer that lives only during this poll.
        let want = match self {
            ReadSide::Busy(busy) if busy.reader.recv_capacity() > 0 => io
                .read_buffer_size()
                .max(HEADER_LEN)
                .max(busy.reader.read_ahead(READ_AHEAD)),
            _ => IDLE_READ,
        };
        let grant = match self {
            ReadSide::Busy(busy) if busy.grant > 0 => busy.grant,
            ReadSide::Busy(busy) => match io.poll_reserve_read(cx, &mut busy.ticket, want) {
                Poll::Ready(n) => {
                    busy.grant = n.clamp(1, want);
                    busy.grant
                }
                Poll::Pending => return Ok(Step::Blocked),
            },
            ReadSide::Idle(_) => {
                // Idle: a grant or a place in line (only with a download
                // cap) is kept in a busy state.
                let mut ticket = Ticket::default();
                match io.poll_reserve_read(cx, &mut ticket, want) {
                    Poll::Ready(n) => n.clamp(1, want),
                    Poll::Pending => {
                        self.busy(shared.max_message_size).ticket = ticket;
                        return Ok(Step::Blocked);
                    }
                }
            }
        };
        let want = want.min(grant);
        let read = match self {
            ReadSide::Busy(busy) if busy.reader.recv_capacity() > 0 => {
                // Straight into the reader's buffer, where chunks are
                // opened in place.
                let buf = busy.reader.recv_buf(want);
                match poll_read_buf(Pin::new(&mut *stream), cx, &mut buf.limit(want)) {
                    Poll::Ready(r) => r,
                    Poll::Pending => {
                        let reader = &mut busy.reader;
                        if reader.unopened() == 0 {
                            // Nothing under way: give the buffers back.
                            // (A grant not used is taken back by the
                            // next reservation.)
                            if reader.buffered() == 0 {
                                self.idle();
                            } else {
                                reader.release_recv_buf();
                            }
                        }
                        return Ok(Step::Blocked);
                    }
                }
            }
            _ => {
                let mut small = [0u8; IDLE_READ];
                let mut rb = ReadBuf::new(&mut small[..want]);
                match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                    Poll::Ready(r) => r.map(|()| {
                        let reader = &mut self.busy(shared.max_message_size).reader;
                        reader.feed(rb.filled());
                        rb.filled().len()
                    }),
                    Poll::Pending => return Ok(Step::Blocked),
                }
            }
        };
        let n = read.map_err(SocketError::from_io)?;
        if n == 0 {
            return Err(SocketError::ConnectionClosed);
        }
        io.record_read(n);
        if let ReadSide::Busy(busy) = self {
            busy.grant = 0;
        }
        Ok(Step::Progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tezos_p2p_wire::message::{OctezMetadata, RawMessage};

    /// The driver is the connection's task: every byte of it is in tokio's
    /// task cell for as long as the connection lives, idle or not.
    #[test]
    fn the_driver_stays_small() {
        let size = std::mem::size_of::<Driver<RawMessage, OctezMetadata>>();
        assert!(size <= 168, "{size} bytes");
    }
}
