//! The session handshake: HELLO in, WELCOME out, and the resume rules —
//! resume here, fetch the session from the worker that holds it, or start
//! a new session and say why.

use std::rc::Rc;
use std::time::Instant;

use ferry_protocol::frame::PROTOCOL_VERSION;
use ferry_protocol::{
    ChannelName, ErrorCode, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome,
    WelcomeOutcome,
};
use tokio::sync::oneshot;

use super::registry::SessionRef;
use super::state::{Session, SessionSnapshot};
use crate::fanout::router::owner_of;
use crate::runtime::mesh::{ControlMsg, SequencerMsg};
use crate::runtime::worker::Worker;
use crate::transport::{FrameIo, TransportError};

/// Why a handshake ended without a session.
#[derive(Debug)]
pub enum Reject {
    /// Tell the client this code, then close.
    Error(ErrorCode, String),
    /// The transport closed or failed; nothing to say.
    Gone,
}

/// Waits (bounded by the handshake timeout) for the first frame, which
/// must be a HELLO of a version we speak.
pub async fn read_hello<T: FrameIo>(worker: &Worker, io: &mut T) -> Result<Hello, Reject> {
    let settings = worker.settings();
    let first = match tokio::time::timeout(settings.handshake_timeout, io.recv()).await {
        Err(_) => {
            return Err(Reject::Error(
                ErrorCode::HandshakeTimeout,
                format!("no HELLO within {:?}", settings.handshake_timeout),
            ));
        }
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => return Err(Reject::Gone),
        Ok(Err(e)) => return Err(reject_transport(e)),
    };
    match ferry_protocol::codec::decode(first, &settings.decode) {
        Ok(Frame::Hello(hello)) if hello.version == PROTOCOL_VERSION => Ok(hello),
        Ok(Frame::Hello(hello)) => Err(Reject::Error(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this gateway speaks {PROTOCOL_VERSION}",
                hello.version
            ),
        )),
        Ok(other) => Err(Reject::Error(
            ErrorCode::UnexpectedFrame,
            format!(
                "the first frame must be HELLO, not {:?}",
                other.frame_type()
            ),
        )),
        Err(e) => Err(Reject::Error(super::driver::code_for(&e), e.to_string())),
    }
}

/// Maps a transport failure during the handshake.
pub fn reject_transport(e: TransportError) -> Reject {
    match e {
        TransportError::TooLarge => {
            Reject::Error(ErrorCode::FrameTooLarge, "frame exceeds the limit".into())
        }
        TransportError::TextMessage => Reject::Error(
            ErrorCode::TextNotSupported,
            "Ferry frames are binary WebSocket messages".into(),
        ),
        _ => Reject::Gone,
    }
}

/// Resolves HELLO into an attached session and its WELCOME.
pub async fn establish(
    worker: &Rc<Worker>,
    hello: Hello,
    conn: u64,
) -> Result<(SessionRef, Welcome), Reject> {
    let user = authenticate(&hello)?;
    let Some(resume) = hello.resume else {
        let sref = new_session(worker, user, conn);
        return Ok((sref, welcome(worker, sref, WelcomeOutcome::New)));
    };
    match resume_session(worker, &resume, conn).await {
        Ok(sref) => {
            crate::metrics::count_resume("resumed");
            Ok((sref, welcome(worker, sref, WelcomeOutcome::Resumed)))
        }
        Err(outcome) => {
            crate::metrics::count_resume(match outcome {
                WelcomeOutcome::NewReplayUnavailable => "replay_unavailable",
                _ => "expired",
            });
            let sref = new_session(worker, user, conn);
            Ok((sref, welcome(worker, sref, outcome)))
        }
    }
}

/// Authentication hook: the user a token names. With `auth.mode = none`
/// every client is anonymous.
fn authenticate(_hello: &Hello) -> Result<Option<String>, Reject> {
    Ok(None)
}

fn new_session(worker: &Worker, user: Option<String>, conn: u64) -> SessionRef {
    let replay = worker.settings().replay;
    let session = Session::new(
        SessionId(rand::random()),
        ResumeSecret(rand::random()),
        user,
        replay,
        conn,
    );
    worker.state.borrow_mut().sessions.insert(session)
}

fn welcome(worker: &Worker, sref: SessionRef, outcome: WelcomeOutcome) -> Welcome {
    let settings = worker.settings();
    let state = worker.state.borrow();
    let (secret, last_client_seq) = state
        .sessions
        .get(sref)
        .map_or((ResumeSecret([0; 32]), 0), |s| {
            (s.secret(), s.last_client_seq())
        });
    Welcome {
        session_id: sref.id,
        resume_secret: secret,
        outcome,
        heartbeat_interval_ms: settings.heartbeat_interval.as_millis() as u64,
        resume_window_ms: settings.resume_window.as_millis() as u64,
        max_frame_size: settings.decode.max_frame_size as u64,
        max_subscriptions: settings.max_subscriptions as u64,
        last_client_seq,
    }
}

/// Finds the session (here or on another worker), checks the secret and
/// prepares the replay. On failure returns the outcome to report.
async fn resume_session(
    worker: &Rc<Worker>,
    resume: &ResumeRequest,
    conn: u64,
) -> Result<SessionRef, WelcomeOutcome> {
    let (sref, moved) = locate(worker, resume).await?;
    let resumed = {
        let mut state = worker.state.borrow_mut();
        let session = state
            .sessions
            .get_mut(sref)
            .ok_or(WelcomeOutcome::NewSessionExpired)?;
        match session.resume_from(resume.last_received_seq) {
            Ok(()) => {
                session.attach(conn);
                Ok(())
            }
            Err(_) => Err(()),
        }
    };
    if resumed.is_err() {
        let removed = worker.state.borrow_mut().remove_session(sref);
        if let (Some((_, channels)), false) = (removed, moved) {
            worker.unsubscribe_all(channels).await;
        }
        return Err(WelcomeOutcome::NewReplayUnavailable);
    }
    if moved {
        resubscribe_moved(worker, sref).await;
    }
    Ok(sref)
}

/// Finds the session: on this worker, on another worker (it moves here),
/// or, during an upgrade, in the old process (it is pulled over). Returns
/// whether it moved.
async fn locate(
    worker: &Rc<Worker>,
    resume: &ResumeRequest,
) -> Result<(SessionRef, bool), WelcomeOutcome> {
    let mut pulled = false;
    loop {
        let local = worker.state.borrow().sessions.find(&resume.session_id);
        if let Some(sref) = local {
            let ok = worker
                .state
                .borrow()
                .sessions
                .get(sref)
                .is_some_and(|s| s.secret_matches(&resume.secret));
            return if ok {
                Ok((sref, false))
            } else {
                Err(WelcomeOutcome::NewSessionExpired)
            };
        }
        let snapshot =
            match fetch_from_other_workers(worker, resume.session_id, resume.secret).await {
                Some(snapshot) => Some(snapshot),
                None if !pulled => {
                    pulled = true;
                    match pull_from_old_process(worker, resume).await {
                        Pull::Found(snapshot) => Some(snapshot),
                        // It may have arrived with the bulk transfer meanwhile.
                        Pull::NotThere => continue,
                        Pull::NoUpgrade => None,
                    }
                }
                None => None,
            };
        let snapshot = snapshot.ok_or(WelcomeOutcome::NewSessionExpired)?;
        let session = Session::from_snapshot(*snapshot, worker.settings().replay, Instant::now())
            .map_err(|_| WelcomeOutcome::NewReplayUnavailable)?;
        tracing::info!(
            worker = worker.index,
            session = ?resume.session_id,
            "session moved here from another worker"
        );
        crate::metrics::count_resume("moved_worker");
        return Ok((worker.state.borrow_mut().sessions.insert(session), true));
    }
}

enum Pull {
    Found(Box<SessionSnapshot>),
    NotThere,
    NoUpgrade,
}

/// During an upgrade (new side), asks the old process for the session.
async fn pull_from_old_process(worker: &Worker, resume: &ResumeRequest) -> Pull {
    let Some(pull) = &worker.shared.pull else {
        return Pull::NoUpgrade;
    };
    let (tx, rx) = oneshot::channel();
    let request = crate::upgrade::PullRequest {
        id: resume.session_id,
        secret: resume.secret,
        reply: tx,
    };
    if pull.send(request).await.is_err() {
        return Pull::NoUpgrade;
    }
    match tokio::time::timeout(std::time::Duration::from_secs(10), rx).await {
        Ok(Ok(Some(snapshot))) => Pull::Found(snapshot),
        _ => Pull::NotThere,
    }
}

/// A session that came from another worker listens again to its channels,
/// catching up from the offset after the last one it got.
async fn resubscribe_moved(worker: &Worker, sref: SessionRef) {
    let subs: Vec<(ChannelName, u64)> = worker
        .state
        .borrow()
        .sessions
        .get(sref)
        .map(|s| {
            s.subscriptions()
                .iter()
                .map(|sub| (sub.channel.clone(), sub.last_offset))
                .collect()
        })
        .unwrap_or_default();
    let workers = worker.mesh.len();
    for (channel, last_offset) in subs {
        let owner = owner_of(&channel, workers);
        let msg = SequencerMsg::Subscribe {
            channel,
            worker: worker.index,
            session: sref,
            request_id: None,
            from_offset: Some(last_offset + 1),
        };
        let _ = worker.mesh.worker(owner).sequencer.send(msg).await;
    }
}

/// Asks every other worker for the session; the one holding it (with a
/// matching secret) hands it over.
async fn fetch_from_other_workers(
    worker: &Worker,
    id: SessionId,
    secret: ResumeSecret,
) -> Option<Box<SessionSnapshot>> {
    let mut replies = Vec::new();
    for (i, links) in worker.mesh.all().iter().enumerate() {
        if i == worker.index {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::TakeSession {
            id,
            secret,
            reply: tx,
        };
        if links.control.send(msg).await.is_ok() {
            replies.push(rx);
        }
    }
    for rx in replies {
        if let Ok(Some(snapshot)) = rx.await {
            return Some(snapshot);
        }
    }
    None
}

/// Hands a session of this worker over to another one: checks the secret,
/// cuts its connection if it has one, and removes it. Returns the snapshot
/// and the channels to unsubscribe here.
pub fn give_away(
    worker: &Worker,
    id: SessionId,
    secret: &ResumeSecret,
) -> Option<(SessionSnapshot, Vec<ChannelName>)> {
    let mut state = worker.state.borrow_mut();
    let sref = state.sessions.find(&id)?;
    if !state.sessions.get(sref)?.secret_matches(secret) {
        return None;
    }
    let (session, channels) = state.remove_session(sref)?;
    Some((session.snapshot(), channels))
}
