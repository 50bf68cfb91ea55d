//! The node's shutdown signal as its tasks wait for it: a `watch` flag that turns `true` once, when
//! the node starts shutting down (`Broker::shutdown_signal`). Imports nothing of the crate, so any
//! task can wait on it without depending on the broker.

use tokio::sync::watch;

/// Resolves once the node starts shutting down.
pub async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is dropped here, before any other await.
    let _ = rx.wait_for(|s| *s).await;
}
