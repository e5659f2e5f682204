//! The accept loop (pool spec §3.1b, F48): hands every accepted socket to
//! the connect handler. An accept error never ends the loop: a shortage of
//! resources (out of file descriptors, network down) pauses it, any other
//! error is logged and the loop goes on. Octez stops accepting on
//! unexpected errors until restart; we do not.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use tezos_p2p_wire::message::{AppMessage, ConnMeta};

use crate::pool::core::Inner;
use crate::pool::peers::PeerMeta;
use crate::socket::transport::Listener;

/// Pause after an accept error caused by a shortage of resources.
pub const RESOURCE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Whether an accept error is a shortage of resources (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM, ENETDOWN) that deserves a pause before retrying.
pub fn is_resource_error(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12, ENETDOWN 100 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12 | 100))
        || e.kind() == io::ErrorKind::OutOfMemory
}

pub(crate) async fn accept_loop<A, C, P>(inner: Arc<Inner<A, C, P>>, listener: Listener)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let cancel = inner.cancel.clone();
    run(
        &cancel,
        || listener.accept(),
        |(stream, remote)| crate::pool::connect::accept(&inner, stream, remote),
    )
    .await
}

/// The loop itself, over any `accept` function (the tests script its
/// errors): runs until `cancel` fires, handing each success to `handle`.
pub(crate) async fn run<T, F, Fut>(
    cancel: &CancellationToken,
    mut accept: F,
    mut handle: impl FnMut(T),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    loop {
        let accepted = tokio::select! {
            biased;
            r = accept() => r,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok(x) => handle(x),
            Err(e) if is_resource_error(&e) => {
                warn!(error = %e, "accept failed for lack of resources; pausing");
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(RESOURCE_ERROR_PAUSE) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed; going on");
                tokio::task::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_pause_others_do_not() {
        assert!(is_resource_error(&io::Error::from_raw_os_error(24)));
        assert!(is_resource_error(&io::Error::from_raw_os_error(23)));
        assert!(!is_resource_error(&io::Error::from_raw_os_error(104)));
        assert!(!is_resource_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
    }

    /// Quirk 19 fixed: no accept error ends the loop. Per-connection and
    /// unexpected errors are skipped at once; resource shortages (EMFILE…)
    /// pause it for [`RESOURCE_ERROR_PAUSE`]; only cancellation stops it.
    #[tokio::test(start_paused = true)]
    async fn accept_loop_never_dies_and_pauses_on_resource_errors() {
        use std::collections::VecDeque;
        use std::sync::Mutex;
        use tokio::time::Instant;

        let script: Mutex<VecDeque<io::Result<u32>>> = Mutex::new(VecDeque::from(vec![
            Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            Err(io::Error::from_raw_os_error(22)), // EINVAL: unexpected
            Err(io::Error::other("full waiting queue")),
            Ok(1),
            Err(io::Error::from_raw_os_error(24)), // EMFILE
            Ok(2),
            Err(io::Error::from_raw_os_error(23)),  // ENFILE
            Err(io::Error::from_raw_os_error(104)), // ECONNRESET
            Ok(3),
        ]));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let handled: Mutex<Vec<(u32, Duration)>> = Mutex::new(Vec::new());
        let cancel2 = cancel.clone();
        let accept = || {
            let next = script.lock().unwrap().pop_front();
            async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        };
        let looped = run(&cancel, accept, |x| {
            handled.lock().unwrap().push((x, start.elapsed()));
            if x == 3 {
                cancel2.cancel();
            }
        });
        tokio::time::timeout(Duration::from_secs(60), looped)
            .await
            .expect("the loop ends on cancellation");
        let handled = handled.into_inner().unwrap();
        assert_eq!(
            handled.iter().map(|h| h.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(handled[0].1, Duration::ZERO, "no pause for other errors");
        assert_eq!(handled[1].1, RESOURCE_ERROR_PAUSE);
        assert_eq!(handled[2].1, 2 * RESOURCE_ERROR_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_loop_stops_on_cancel_even_while_pausing() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let looped = tokio::spawn(async move {
            run(
                &c2,
                || async { Err::<(), _>(io::Error::from_raw_os_error(24)) },
                |_| {},
            )
            .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_millis(10), looped)
            .await
            .expect("stopped at once")
            .unwrap();
    }
}
