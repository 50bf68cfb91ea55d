//! One session's byte stream on a link, with credit-based flow control.
//!
//! Invariants: `poll_write` sends at most the credit the peer granted (a stream with no credit
//! waits, the link does not); `poll_read` returns credit once half the window was consumed, so
//! the peer's sends and our buffer stay within one window. After the peer's `Close`, reads end
//! (after what was buffered) and writes fail; after the link dies both fail with
//! `ConnectionReset`, which is how the owner tells a lost node from a closed session.

use super::LinkShared;
use crate::wire::{Frame, Header, StreamId};
use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest data frame (bounds the copy per write and the latency other streams see).
const MAX_DATA_FRAME: usize = 64 * 1024;

#[derive(Default)]
struct State {
    rx: VecDeque<Bytes>,
    /// Consumed but not yet credited back.
    unacked: u32,
    /// Bytes we may still send.
    credit: u32,
    peer_closed: bool,
    link_broken: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// The state the link's reader and the stream's owner share.
pub(crate) struct StreamShared {
    id: StreamId,
    state: Mutex<State>,
}

impl StreamShared {
    pub(crate) fn new(id: StreamId, credit: u32) -> Arc<StreamShared> {
        Arc::new(StreamShared { id, state: Mutex::new(State { credit, ..State::default() }) })
    }

    pub(crate) fn received(&self, data: Bytes) {
        let mut s = self.state.lock();
        if !data.is_empty() {
            s.rx.push_back(data);
        }
        wake(&mut s.read_waker);
    }

    pub(crate) fn credited(&self, bytes: u32) {
        let mut s = self.state.lock();
        s.credit = s.credit.saturating_add(bytes);
        wake(&mut s.write_waker);
    }

    pub(crate) fn peer_closed(&self) {
        let mut s = self.state.lock();
        s.peer_closed = true;
        wake(&mut s.read_waker);
        wake(&mut s.write_waker);
    }

    pub(crate) fn break_link(&self) {
        let mut s = self.state.lock();
        s.link_broken = true;
        wake(&mut s.read_waker);
        wake(&mut s.write_waker);
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// A session's stream on a link: reads what the peer sent, writes within the peer's credit.
pub struct MuxStream {
    shared: Arc<StreamShared>,
    link: Arc<LinkShared>,
    closed: bool,
}

impl MuxStream {
    pub(crate) fn new(shared: Arc<StreamShared>, link: Arc<LinkShared>) -> MuxStream {
        MuxStream { shared, link, closed: false }
    }

    /// Node id of the peer.
    pub fn peer(&self) -> &str {
        &self.link.peer
    }

    fn close(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            self.link.forget(self.shared.id);
            self.link.send(Frame::bare(Header::Close { stream: self.shared.id }));
        }
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "internal link lost")
}

impl AsyncRead for MuxStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut s = this.shared.state.lock();
        let mut read = 0usize;
        while buf.remaining() > 0 {
            let Some(front) = s.rx.front_mut() else { break };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                s.rx.pop_front();
            }
            read += n;
        }
        if read > 0 {
            s.unacked = s.unacked.saturating_add(read as u32);
            if s.unacked >= this.link.window() / 2 && !s.peer_closed && !this.closed {
                let bytes = std::mem::take(&mut s.unacked);
                drop(s);
                this.link.send(Frame::bare(Header::Credit { stream: this.shared.id, bytes }));
            }
            return Poll::Ready(Ok(()));
        }
        if s.peer_closed || this.closed {
            return Poll::Ready(Ok(()));
        }
        if s.link_broken {
            return Poll::Ready(Err(reset()));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut s = this.shared.state.lock();
        if s.link_broken {
            return Poll::Ready(Err(reset()));
        }
        if s.peer_closed || this.closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed")));
        }
        if s.credit == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(s.credit as usize).min(MAX_DATA_FRAME);
        s.credit -= n as u32;
        drop(s);
        let frame = Frame { header: Header::Data { stream: this.shared.id }, body: Bytes::copy_from_slice(&buf[..n]) };
        if !this.link.send(frame) {
            return Poll::Ready(Err(reset()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        self.close();
    }
}
