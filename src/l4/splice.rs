//! Zero-copy for busy Layer 4 tunnels (Linux): bytes move socket → pipe → socket with
//! `splice(2)` and never enter user space. A direction switches to it only once a read fills
//! a whole buffer (bulk transfer, as HAProxy's `splice-auto` decides), so chatty and idle
//! tunnels keep their two descriptors and no pipe; a pipe costs two more descriptors and up
//! to 64 KiB of kernel memory while it holds data.

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes moved into the pipe at once: its default capacity (16 pages).
#[cfg(target_os = "linux")]
const PIPE_CHUNK: usize = 64 * 1024;

/// A pipe and how many bytes it holds that are not yet written on.
#[cfg(target_os = "linux")]
pub struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    held: usize,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// A non-blocking, close-on-exec pipe; fails when descriptors run out (the tunnel then
    /// keeps copying).
    pub fn new() -> io::Result<Pipe> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }

    /// Bytes in the pipe waiting for the destination.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Moves what `src` has (up to the pipe's capacity) into the empty pipe; `Ok(0)` is the
    /// end of `src`'s stream. Call once `src` reported readable: `WouldBlock` clears that.
    pub fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
        debug_assert_eq!(
            self.held, 0,
            "filled only when empty, so the pipe is never full"
        );
        let n = src.try_io(Interest::READABLE, || splice(src, &self.write, PIPE_CHUNK))?;
        self.held = n;
        Ok(n)
    }

    /// Moves held bytes on to `dst`; returns how many went. Call once `dst` reported
    /// writable: `WouldBlock` clears that.
    pub fn drain(&mut self, dst: &TcpStream) -> io::Result<usize> {
        let n = dst.try_io(Interest::WRITABLE, || splice(&self.read, dst, self.held))?;
        self.held -= n.min(self.held);
        Ok(n)
    }
}

#[cfg(target_os = "linux")]
fn splice(
    from: impl std::os::fd::AsFd,
    to: impl std::os::fd::AsFd,
    len: usize,
) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )
    .map_err(io::Error::from)
}

/// Elsewhere tunnels always copy: `new` fails, so no pipe is ever used.
#[cfg(not(target_os = "linux"))]
pub struct Pipe(std::convert::Infallible);

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn held(&self) -> usize {
        match self.0 {}
    }

    pub fn fill(&mut self, _src: &TcpStream) -> io::Result<usize> {
        match self.0 {}
    }

    pub fn drain(&mut self, _dst: &TcpStream) -> io::Result<usize> {
        match self.0 {}
    }
}
