//! Zero-downtime binary upgrades: the running process hands its listening sockets to a new
//! one over a Unix socket (SCM_RIGHTS), and once the new one reports that it is serving, it
//! drains and exits. Both processes then share the same kernel sockets, so no connection
//! waiting in a backlog is lost (unlike two SO_REUSEPORT sockets, where closing one drops its
//! queue). A new process that fails to start (a certificate it cannot load, an address it
//! cannot bind) never reports ready, and the old one simply goes on serving.
//!
//! Protocol: the new process connects to `--upgrade-socket`, sends `portico-upgrade 2\n`,
//! and receives one message whose data is one `name\tbind\n` line per listener and whose
//! ancillary data carries the sockets in the same order. When it serves, it writes
//! `ready\n`; the old process drains only then. rustix gives a safe API for the ancillary
//! data, so no `unsafe` is needed.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

const HELLO: &[u8] = b"portico-upgrade 2\n";
const READY: &[u8] = b"ready\n";
/// How long the old process waits for the new one to report ready before it gives up on
/// the upgrade and goes on serving alone.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// More listeners than any sane config has; the message is refused above it.
const MAX_SOCKETS: usize = 64;
const MAX_NAMES: usize = 64 * 1024;

/// A listening socket received from the previous process.
pub struct Inherited {
    pub name: String,
    pub bind: SocketAddr,
    pub socket: TcpListener,
}

/// The new process's side of a hand-over: the sockets, and the line back to the old
/// process, which drains once `ready` is called (never, if this process fails first).
pub struct TakeOver {
    pub sockets: Vec<Inherited>,
    line: UnixStream,
}

impl TakeOver {
    /// Reports that this process serves, so the old one may drain.
    pub fn ready(mut self) -> io::Result<()> {
        self.line.write_all(READY)
    }
}

/// A listening socket offered to the next process: its listener name, configured address and
/// a duplicate of its descriptor.
#[derive(Clone)]
pub struct Offered {
    pub name: String,
    pub bind: SocketAddr,
    pub socket: Arc<OwnedFd>,
}

/// New process: asks the process serving `path` for its sockets. `Ok(None)` when nobody
/// listens there (a first start).
pub fn take_over(path: &Path) -> io::Result<Option<TakeOver>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(HELLO)?;
    let mut names = vec![0u8; MAX_NAMES];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut names)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let text = std::str::from_utf8(&names[..received.bytes])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "listener names not UTF-8"))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} listener names for {} sockets", lines.len(), fds.len()),
        ));
    }
    let mut inherited = Vec::with_capacity(fds.len());
    for (line, fd) in lines.into_iter().zip(fds) {
        let (name, bind) = line
            .split_once('\t')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad listener line"))?;
        let bind = bind
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad listener address"))?;
        inherited.push(Inherited {
            name: name.to_owned(),
            bind,
            socket: TcpListener::from(fd),
        });
    }
    Ok(Some(TakeOver {
        sockets: inherited,
        line: stream,
    }))
}

/// Old process: answers one hand-over request on `stream` with `sockets`, then waits for the
/// new process to report ready; an error means it did not, and this process keeps serving.
pub fn hand_over(mut stream: UnixStream, sockets: &[Offered]) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hello = [0u8; HELLO.len()];
    stream.read_exact(&mut hello)?;
    if hello != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Portico upgrade request",
        ));
    }
    if sockets.is_empty() || sockets.len() > MAX_SOCKETS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} listeners to hand over", sockets.len()),
        ));
    }
    let names: String = sockets
        .iter()
        .map(|s| format!("{}\t{}\n", s.name, s.bind))
        .collect();
    let fds: Vec<_> = sockets.iter().map(|s| s.socket.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    sendmsg(
        &stream,
        &[IoSlice::new(names.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut ready = [0u8; READY.len()];
    match stream.read_exact(&mut ready) {
        Ok(()) if ready == READY => Ok(()),
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the new process sent something else than ready",
        )),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            e.kind(),
            "the new process ended before it was serving",
        )),
        Err(e) => Err(e),
    }
}

/// Old process: serves hand-over requests on `path` (replacing a stale socket file) until
/// one succeeds (the new process reported ready), then calls `handed` (which starts the
/// drain). `offer` gives the listeners
/// running at that moment.
pub async fn serve(
    path: &Path,
    offer: impl Fn() -> Vec<Offered>,
    handed: impl FnOnce() + Send,
) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    tracing::info!(path = %path.display(), "accepting binary upgrades");
    loop {
        let (stream, _) = listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        let offered = offer();
        let sent = tokio::task::spawn_blocking(move || hand_over(stream, &offered)).await;
        match sent {
            Ok(Ok(())) => {
                tracing::info!("listening sockets handed to a new process; draining");
                handed();
                return Ok(());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "upgrade hand-over failed; still serving"),
            Err(e) => tracing::warn!(error = %e, "upgrade hand-over task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An old process's side on a fresh socket path: hands `tcp` over to the first request
    /// and returns what `hand_over` said.
    fn old_side(path: &Path, tcp: &TcpListener) -> std::thread::JoinHandle<io::Result<()>> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        let offered = vec![Offered {
            name: "web".to_owned(),
            bind: "127.0.0.1:0".parse().unwrap(),
            socket: Arc::new(tcp.as_fd().try_clone_to_owned().unwrap()),
        }];
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            hand_over(stream, &offered)
        })
    }

    #[test]
    fn sockets_cross_to_the_other_side_and_keep_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        assert!(take_over(&path).unwrap().is_none(), "nobody listening yet");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let old = old_side(&path, &tcp);
        let got = take_over(&path).unwrap().unwrap();
        assert_eq!(got.sockets.len(), 1);
        assert_eq!(got.sockets[0].name, "web");
        let socket = got.sockets[0].socket.try_clone().unwrap();
        assert_eq!(socket.local_addr().unwrap(), addr);
        got.ready().unwrap();
        old.join().unwrap().unwrap();
        drop(tcp);
        // The same kernel socket: a client connecting now is accepted on the new side.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_, peer) = socket.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[test]
    fn a_new_process_that_ends_before_serving_does_not_count_as_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let old = old_side(&path, &tcp);
        let got = take_over(&path).unwrap().unwrap();
        drop(got);
        let said = old.join().unwrap();
        assert_eq!(
            said.map_err(|e| e.kind()).unwrap_err(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
