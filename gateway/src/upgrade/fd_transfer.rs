//! Passing open sockets to another process over a Unix socket
//! (SCM_RIGHTS). The receiving process gets new descriptors for the same
//! kernel sockets: a listening socket shared this way never closes, so no
//! connection attempt is refused while both processes hold it.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Most descriptors sent in one message.
pub const MAX_FDS: usize = 64;

/// Sends `fds` with a one-byte payload (ancillary data needs one) over the
/// Unix stream socket `stream`.
pub fn send_fds(stream: &impl AsRawFd, fds: &[RawFd]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "cannot pass {} descriptors at once (max {MAX_FDS})",
            fds.len()
        )));
    }
    let payload = [fds.len() as u8];
    let iov = [IoSlice::new(&payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// Receives descriptors sent by [`send_fds`].
pub fn recv_fds(stream: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    let mut payload = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for
                // us (SCM_RIGHTS); nothing else owns it, so taking
                // ownership here is sound and closes it exactly once.
                #[allow(unsafe_code)]
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(std::io::Error::other(
            "descriptors were truncated in transit",
        ));
    }
    if msg.bytes == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the other process closed the control socket",
        ));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_survives_the_trip_and_still_accepts() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        send_fds(&a, &[listener.as_raw_fd()]).unwrap();
        drop(listener);
        let mut fds = recv_fds(&b).unwrap();
        assert_eq!(fds.len(), 1);
        let received = std::net::TcpListener::from(fds.remove(0));
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(received.accept().is_ok());
    }
}
