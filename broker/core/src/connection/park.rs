//! A connection taken out of the async reactor while its session is parked (see
//! `session::park`): the socket, the connection's slots and outbound options, and no buffers.
//!
//! Invariant: only a plain-TCP connection with nothing read and nothing left to write parks, so
//! resuming it loses no bytes: whatever the client sends meanwhile waits in the kernel.

use super::{ClientIo, ClientStream, ConnGuard, OutboundAliases};
use bytes::BytesMut;
use std::os::fd::{AsRawFd, RawFd};

/// A parked connection's socket and state.
pub struct ParkedIo {
    stream: std::net::TcpStream,
    /// Largest inbound packet (at most 268,435,460: fits).
    max_packet_size: u32,
    aliases: OutboundAliases,
    /// Still held: a parked connection keeps its slots in the caps and the shutdown drain.
    guard: ConnGuard,
}

impl ClientIo {
    /// Whether the connection can park: plain TCP, CONNECT accepted, nothing read, nothing left
    /// to write or flush, the stream not ended.
    pub fn parkable(&self) -> bool {
        matches!(self.stream, ClientStream::Tcp(_))
            && self.protocol.is_some()
            && self.rbuf.is_empty()
            && self.wbuf.is_empty()
            && !self.unflushed
            && !self.eof
    }

    /// Takes the socket out of the reactor, dropping the (empty) buffers. Call only when
    /// [`ClientIo::parkable`]; on error (including a connection that was not) it is gone.
    pub fn park(self) -> std::io::Result<ParkedIo> {
        let idle = self.parkable();
        let ClientStream::Tcp(tcp) = self.stream else {
            return Err(std::io::Error::other("only plain-TCP connections park"));
        };
        if !idle {
            return Err(std::io::Error::other("parking a connection with bytes buffered"));
        }
        Ok(ParkedIo {
            stream: tcp.into_std()?,
            max_packet_size: u32::try_from(self.max_packet_size).unwrap_or(u32::MAX),
            aliases: self.aliases,
            guard: self.guard,
        })
    }
}

impl ParkedIo {
    /// The connection's protocol and the client's Maximum Packet Size (its outbound options).
    pub fn options(&self) -> (fleetmq_codec::Protocol, Option<u32>) {
        (self.aliases.opts.protocol, self.aliases.opts.max_packet_size)
    }

    /// Registers the socket with the reactor again (call on a runtime thread); on error the
    /// connection is gone.
    pub fn resume(self) -> std::io::Result<ClientIo> {
        let ParkedIo { stream, max_packet_size, aliases, guard } = self;
        Ok(ClientIo {
            stream: ClientStream::Tcp(tokio::net::TcpStream::from_std(stream)?),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            protocol: Some(aliases.opts.protocol),
            max_packet_size: max_packet_size as usize,
            streaming: false,
            unflushed: false,
            eof: false,
            aliases,
            guard,
        })
    }
}

impl AsRawFd for ParkedIo {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
