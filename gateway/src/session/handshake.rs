//! The session handshake: HELLO in, WELCOME out, and the resume rules —
//! resume here, fetch the session from the worker that holds it, or start
//! a new session and say why.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_protocol::frame::PROTOCOL_VERSION;
use ferry_protocol::{
    ChannelName, ErrorCode, Frame, Hello, ResumeRequest, ResumeSecret, SessionId, Welcome,
    WelcomeOutcome,
};
use tokio::sync::oneshot;

use super::credentials::Credentials;
use super::registry::SessionRef;
use super::state::{Session, SessionSnapshot};
use crate::auth::{AuthError, Identity};
use crate::fanout::router::owner_of;
use crate::runtime::mesh::{ControlMsg, SequencerMsg, TakeRefused};
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

/// Waits for the first frame, which must be a HELLO of a version we
/// speak, until the handshake deadline the transport set at accept (the
/// time spent in TLS and the upgrade counts against it).
pub async fn read_hello<T: FrameIo>(worker: &Worker, io: &mut T) -> Result<Hello, Reject> {
    let settings = worker.settings();
    let deadline = io
        .handshake_deadline()
        .unwrap_or_else(|| Instant::now() + settings.handshake_timeout);
    let first = match tokio::time::timeout_at(deadline.into(), io.recv()).await {
        Err(_) => {
            return Err(Reject::Error(
                ErrorCode::HandshakeTimeout,
                format!(
                    "no HELLO within {:?} of connecting",
                    settings.handshake_timeout
                ),
            ));
        }
        Ok(Ok(Some(bytes))) => {
            // From here on the connection is a session being attached,
            // never shed: tearing that down midway could lose the session.
            io.handshake_done();
            bytes
        }
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
        TransportError::Malformed(why) => Reject::Error(ErrorCode::MalformedFrame, why),
        _ => Reject::Gone,
    }
}

/// A session attached to a new connection.
#[derive(Debug)]
pub struct Established {
    /// The session.
    pub session: SessionRef,
    /// What to send first.
    pub welcome: Welcome,
    /// The verified token; `None` with `auth.mode = "none"`.
    pub credentials: Option<Credentials>,
}

/// Resolves HELLO into an attached session and its WELCOME.
pub async fn establish(
    worker: &Rc<Worker>,
    hello: Hello,
    conn: u64,
    peer: SocketAddr,
) -> Result<Established, Reject> {
    let credentials = authenticate(worker, &hello.token, peer)?;
    let user = credentials.as_ref().map(|c| c.user().to_owned());
    let established = |sref, outcome| Established {
        session: sref,
        welcome: welcome(worker, sref, outcome),
        credentials,
    };
    let Some(resume) = hello.resume else {
        let sref = new_session(worker, user, conn);
        return Ok(established(sref, WelcomeOutcome::New));
    };
    match resume_session(worker, &resume, user.as_deref(), conn).await {
        Ok(sref) => {
            crate::metrics::count_resume("resumed");
            Ok(established(sref, WelcomeOutcome::Resumed))
        }
        Err(ResumeFailed::OtherUser) => {
            crate::metrics::count_resume("identity_mismatch");
            Err(Reject::Error(
                ErrorCode::IdentityMismatch,
                "the token names another user than the session's; connect without resume".into(),
            ))
        }
        Err(ResumeFailed::New(outcome)) => {
            crate::metrics::count_resume(match outcome {
                WelcomeOutcome::NewReplayUnavailable => "replay_unavailable",
                _ => "expired",
            });
            let sref = new_session(worker, user, conn);
            Ok(established(sref, outcome))
        }
    }
}

/// The current Unix time. A clock before 1970 reads as 1970, which makes
/// every token look expired: a loud failure rather than a silent pass.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Verifies HELLO's token when authentication is on (`None` when it is
/// off: every client is anonymous). A source with too many recent
/// failures is refused before its token is looked at.
fn authenticate(
    worker: &Worker,
    token: &str,
    peer: SocketAddr,
) -> Result<Option<Credentials>, Reject> {
    let Some(auth) = worker.settings().auth.clone() else {
        return Ok(None);
    };
    let now = Instant::now();
    if worker.failed_auth.borrow_mut().is_blocked(peer.ip(), now) {
        return Err(Reject::Error(
            ErrorCode::AuthRateLimited,
            "too many failed authentications from this address; retry later".into(),
        ));
    }
    let now_unix = unix_now();
    match auth.verify(token, now_unix.as_secs()) {
        Ok(identity) => Ok(Some(Credentials::new(identity, now_unix, now))),
        Err(e) => {
            record_failure(worker, peer, &e);
            Err(Reject::Error(e.code(), e.to_string()))
        }
    }
}

/// Verifies a TOKEN frame's token with the current keys (so a key
/// removed by a reload no longer verifies); `None` when authentication is
/// off. A failure counts against `peer` like a failed HELLO, but a blocked
/// source is not refused here: its connection already authenticated.
pub fn verify_fresh_token(
    worker: &Worker,
    token: &str,
    peer: SocketAddr,
    now_unix: Duration,
) -> Option<Result<Identity, AuthError>> {
    let auth = worker.settings().auth.clone()?;
    let verified = auth.verify(token, now_unix.as_secs());
    if let Err(e) = &verified {
        record_failure(worker, peer, e);
    }
    Some(verified)
}

fn record_failure(worker: &Worker, peer: SocketAddr, e: &AuthError) {
    tracing::debug!(%peer, code = e.code().as_u16(), "authentication failed: {e}");
    worker
        .failed_auth
        .borrow_mut()
        .record_failure(peer.ip(), Instant::now());
}

/// Why a resume did not attach the session.
enum ResumeFailed {
    /// Start a new session, telling the client why.
    New(WelcomeOutcome),
    /// The session belongs to another user: refuse (407).
    OtherUser,
}

impl From<WelcomeOutcome> for ResumeFailed {
    fn from(outcome: WelcomeOutcome) -> Self {
        Self::New(outcome)
    }
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
/// the user, and prepares the replay.
async fn resume_session(
    worker: &Rc<Worker>,
    resume: &ResumeRequest,
    user: Option<&str>,
    conn: u64,
) -> Result<SessionRef, ResumeFailed> {
    let (sref, moved) = locate(worker, resume, user).await?;
    let owner_ok = |session: &Session| user.is_none_or(|u| session.user() == Some(u));
    let resumed = {
        let mut state = worker.state.borrow_mut();
        let session = state
            .sessions
            .get_mut(sref)
            .ok_or(WelcomeOutcome::NewSessionExpired)?;
        if !owner_ok(session) {
            Err(ResumeFailed::OtherUser)
        } else {
            match session.resume_from(resume.last_received_seq) {
                Ok(()) => {
                    session.attach(conn);
                    Ok(())
                }
                Err(_) => Err(ResumeFailed::New(WelcomeOutcome::NewReplayUnavailable)),
            }
        }
    };
    match resumed {
        Ok(()) => {}
        Err(ResumeFailed::OtherUser) => {
            // Untouched and detached (or still attached to its own
            // connection). One pulled from the old process during an
            // upgrade stays here, listening again, for its own user.
            if moved {
                resubscribe_moved(worker, sref).await;
            }
            return Err(ResumeFailed::OtherUser);
        }
        Err(failed) => {
            let removed = worker.state.borrow_mut().remove_session(sref);
            if let (Some((_, channels)), false) = (removed, moved) {
                worker.unsubscribe_all(channels).await;
            }
            return Err(failed);
        }
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
    user: Option<&str>,
) -> Result<(SessionRef, bool), ResumeFailed> {
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
                Err(WelcomeOutcome::NewSessionExpired.into())
            };
        }
        let fetched = fetch_from_other_workers(worker, resume.session_id, resume.secret, user);
        let snapshot = match fetched.await {
            Ok(snapshot) => Some(snapshot),
            Err(TakeRefused::OtherUser) => return Err(ResumeFailed::OtherUser),
            Err(TakeRefused::NotHere) if !pulled => {
                pulled = true;
                match pull_from_old_process(worker, resume).await {
                    Pull::Found(snapshot) => Some(snapshot),
                    // It may have arrived with the bulk transfer meanwhile.
                    Pull::NotThere => continue,
                    Pull::NoUpgrade => None,
                }
            }
            Err(TakeRefused::NotHere) => None,
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
pub(crate) async fn resubscribe_moved(worker: &Worker, sref: SessionRef) {
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
/// matching secret, for this user) hands it over.
async fn fetch_from_other_workers(
    worker: &Worker,
    id: SessionId,
    secret: ResumeSecret,
    user: Option<&str>,
) -> Result<Box<SessionSnapshot>, TakeRefused> {
    let mut replies = Vec::new();
    for (i, links) in worker.mesh.all().iter().enumerate() {
        if i == worker.index {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let msg = ControlMsg::TakeSession {
            id,
            secret,
            user: user.map(str::to_owned),
            reply: tx,
        };
        if links.control.send(msg).await.is_ok() {
            replies.push(rx);
        }
    }
    let mut refused = TakeRefused::NotHere;
    for rx in replies {
        match rx.await {
            Ok(Ok(snapshot)) => return Ok(snapshot),
            Ok(Err(TakeRefused::OtherUser)) => refused = TakeRefused::OtherUser,
            Ok(Err(TakeRefused::NotHere)) | Err(_) => {}
        }
    }
    Err(refused)
}

/// Hands a session of this worker over to another one: checks the secret
/// and (when `user` is set) the owner, cuts its connection if it has one,
/// and removes it. Returns the snapshot and the channels to unsubscribe
/// here. The owner is checked here, before anything moves, so that a
/// resume with the secret but another user's token disturbs nothing.
pub fn give_away(
    worker: &Worker,
    id: SessionId,
    secret: &ResumeSecret,
    user: Option<&str>,
) -> Result<(SessionSnapshot, Vec<ChannelName>), TakeRefused> {
    let mut state = worker.state.borrow_mut();
    let sref = state.sessions.find(&id).ok_or(TakeRefused::NotHere)?;
    let session = state.sessions.get(sref).ok_or(TakeRefused::NotHere)?;
    if !session.secret_matches(secret) {
        return Err(TakeRefused::NotHere);
    }
    if user.is_some_and(|u| session.user() != Some(u)) {
        return Err(TakeRefused::OtherUser);
    }
    let (session, channels) = state.remove_session(sref).ok_or(TakeRefused::NotHere)?;
    Ok((session.snapshot(), channels))
}
