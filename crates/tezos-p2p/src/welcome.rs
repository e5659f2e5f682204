//! The accept loop (pool spec §3.1b, F48): hands every accepted socket to
//! the connect handler. An accept error never ends the loop: a shortage of
//! resources (out of file descriptors, network down) pauses it, any other
//! error is logged and the loop goes on. Octez stops accepting on
//! unexpected errors until restart; we do not.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use tezos_p2p_wire::message::{AppMessage, ConnMeta};

use crate::net::Inner;
use crate::peers::PeerMeta;
use crate::transport::Listener;

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
    loop {
        let accepted = tokio::select! {
            biased;
            r = listener.accept() => r,
            _ = inner.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => crate::connect::accept(&inner, stream, remote),
            Err(e) if is_resource_error(&e) => {
                warn!(error = %e, "accept failed for lack of resources; pausing");
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(RESOURCE_ERROR_PAUSE) => {}
                    _ = inner.cancel.cancelled() => return,
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
}
