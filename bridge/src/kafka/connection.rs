//! One client connection: length-prefixed frames in, responses out, strictly in order.
//!
//! Invariants:
//! - Requests are handled one at a time in arrival order and each response is written and
//!   flushed before the next request is read, so responses leave in request order (Kafka clients
//!   match them by position as well as by correlation id). Pipelined requests wait in the socket
//!   buffer meanwhile.
//! - A frame is buffered only up to the size its prefix announces, at most `max_request_bytes`,
//!   and only as fast as the client sends it.
//! - Any failure (bad frame, unanswerable request, I/O error, a client that stops sending or
//!   stops reading for the idle timeout) ends this connection only; shutdown ends it at once,
//!   abandoning a request in flight (a long poll, a JoinGroup waiting for a rebalance).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;

use super::{Dispatcher, Error, Result};

/// Per-connection limits, from [`KafkaConfig`](super::KafkaConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest accepted frame.
    pub max_request_bytes: usize,
    /// Longest wait for the next frame, and for the client to take a response.
    pub idle_timeout: Duration,
}

/// Serves one connection until the client leaves, a request fails, or shutdown is signalled.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    dispatcher: Dispatcher,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let outcome = loop {
        let frame = tokio::select! {
            read = tokio::time::timeout(limits.idle_timeout, read_frame(&mut reader, limits.max_request_bytes)) => {
                match read {
                    Ok(Ok(Some(frame))) => frame,
                    Ok(Ok(None)) => break Ok(()),
                    Ok(Err(e)) => break Err(e),
                    Err(_) => {
                        tracing::debug!(%peer, "closing idle Kafka connection");
                        break Ok(());
                    }
                }
            }
            () = signalled(&mut shutdown) => break Ok(()),
        };
        let response = tokio::select! {
            response = dispatcher.handle(frame) => response,
            () = signalled(&mut shutdown) => break Ok(()),
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => break Err(e),
        };
        let written = tokio::select! {
            written = tokio::time::timeout(limits.idle_timeout, write_frame(&mut writer, &response)) => written,
            () = signalled(&mut shutdown) => break Ok(()),
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                tracing::debug!(%peer, "closing Kafka connection whose client stopped reading");
                break Ok(());
            }
        }
    };
    if let Err(e) = outcome {
        match e {
            Error::Io(e) => tracing::debug!(%peer, error = %e, "Kafka connection I/O error"),
            e => {
                tracing::warn!(%peer, error = %e, "closing Kafka connection");
                metrics::counter!("fleetmq_kafka_errors_total", "kind" => "request").increment(1);
            }
        }
    }
}

/// Resolves once shutdown is signalled (or can no longer be, because the sender is gone).
pub(crate) async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Reads one frame: a big-endian `i32` length, then that many bytes. `None` on a clean end of
/// stream before a frame starts; an error if the length is out of bounds or the stream ends
/// inside the frame.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Option<Bytes>> {
    let mut prefix = [0u8; 4];
    let first = reader.read(&mut prefix).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[first..]).await?;
    let size = i32::from_be_bytes(prefix);
    let len = usize::try_from(size).ok().filter(|len| *len <= max && *len > 0);
    let Some(len) = len else {
        return Err(Error::FrameSize { size: i64::from(size), max });
    };
    let mut frame = Vec::with_capacity(len.min(64 * 1024));
    let got = reader.take(len as u64).read_to_end(&mut frame).await?;
    if got < len {
        return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(Bytes::from(frame)))
}

/// Writes one length-prefixed frame and flushes it.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<()> {
    let len = i32::try_from(frame.len())
        .map_err(|_| Error::FrameSize { size: frame.len() as i64, max: i32::MAX as usize })?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(frame).await?;
    writer.flush().await?;
    Ok(())
}
