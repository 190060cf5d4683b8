//! `H1Guard`'s byte-stream side: reads hand out only checked bytes (or the poison request),
//! and writes are watched for the status line that decides a held tunnel request.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{H1Guard, State, POISON};
/// Reads at most `limit` bytes from `inner` straight into `dst`.
fn read_limited<IO: AsyncRead>(
    inner: Pin<&mut IO>,
    cx: &mut Context<'_>,
    dst: &mut ReadBuf<'_>,
    limit: u64,
) -> Poll<io::Result<usize>> {
    let before = dst.filled().len();
    if limit >= dst.remaining() as u64 {
        ready!(inner.poll_read(cx, dst))?;
        return Poll::Ready(Ok(dst.filled().len() - before));
    }
    // Only the last, short read of a body lands here; zeroing it keeps this free of unsafe.
    let mut sub = ReadBuf::new(dst.initialize_unfilled_to(limit as usize));
    ready!(inner.poll_read(cx, &mut sub))?;
    let n = sub.filled().len();
    dst.advance(n);
    Poll::Ready(Ok(n))
}

impl<IO: AsyncRead> AsyncRead for H1Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let core = this.core;
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if core.release(dst) {
                return Poll::Ready(Ok(()));
            }
            match core.state {
                State::Closed => return Poll::Ready(Ok(())),
                State::Poison(at) => {
                    let n = (POISON.len() - at).min(dst.remaining());
                    dst.put_slice(&POISON[at..at + n]);
                    core.state = match at + n {
                        done if done == POISON.len() => State::Closed,
                        next => State::Poison(next),
                    };
                    return Poll::Ready(Ok(()));
                }
                State::Held(_) => {
                    // Woken by the write of the response's status line.
                    core.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                _ => {}
            }
            if core.ok < core.end && core.process() {
                continue;
            }
            if let Some(limit) = core.direct_limit() {
                core.drop_buffer_in_tunnel();
                let n = ready!(read_limited(this.inner.as_mut(), cx, dst, limit))?;
                core.after_direct(n);
                return Poll::Ready(Ok(()));
            }
            let mut space = ReadBuf::new(core.spare());
            ready!(this.inner.as_mut().poll_read(cx, &mut space))?;
            match space.filled().len() {
                0 => core.close(),
                n => core.end += n,
            }
        }
    }
}

impl<IO: AsyncWrite> AsyncWrite for H1Guard<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.inner.poll_write(cx, b))?;
        this.core.observe_write(&b[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let mut n = ready!(this.inner.poll_write_vectored(cx, bufs))?;
        let written = n;
        for buf in bufs {
            if n == 0 || !matches!(this.core.state, State::Held(_)) {
                break;
            }
            let part = n.min(buf.len());
            this.core.observe_write(&buf[..part]);
            n -= part;
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
