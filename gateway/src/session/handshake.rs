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
use crate::phase::Phase;
use crate::runtime::mesh::{ControlMsg, SequencerMsg, TakeRefused};
use crate::runtime::worker::Worker;
use crate::transport::{FrameIo, TransportError};

/// Why a handshake ended without a session.
#[derive(Debug)]
pub enum Reject {
    /// Tell the client this code, then close.
    Error(ErrorCode, String),
    /// Send the client away (GOAWAY) to come back after this many ms.
    GoAway(ErrorCode, u64),
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
    parse_hello(first, &settings.decode)
}

/// The first message of a connection, which must be a HELLO of a version
/// we speak. Pure, so that it can be fuzzed.
pub fn parse_hello(
    first: bytes::Bytes,
    limits: &ferry_protocol::DecodeLimits,
) -> Result<Hello, Reject> {
    match ferry_protocol::codec::decode(first, limits) {
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
    opened_at: Instant,
) -> Result<Established, Reject> {
    // Which connection the client opened last decides who owns a session,
    // not the order in which handshakes finish: an attempt the client has
    // given up on may finish after the one it uses now.
    let hello_at = opened_at;
    refuse_while_handing_over(worker)?;
    let credentials = authenticate(worker, &hello.token, peer)?;
    let user = credentials.as_ref().map(|c| c.user().to_owned());
    let established = |sref, outcome| Established {
        session: sref,
        welcome: welcome(worker, sref, outcome),
        credentials,
    };
    let Some(resume) = hello.resume else {
        let sref = new_session(worker, user, conn, hello_at).await?;
        return Ok(established(sref, WelcomeOutcome::New));
    };
    match resume_session(worker, &resume, user.as_deref(), conn, hello_at).await {
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
        Err(ResumeFailed::Refused(reject)) => Err(reject),
        Err(ResumeFailed::Superseded) => {
            crate::metrics::count_resume("superseded");
            Err(Reject::Error(
                ErrorCode::SessionTakenOver,
                "a connection whose HELLO came later resumed this session; use that one".into(),
            ))
        }
        Err(ResumeFailed::New(outcome)) => {
            crate::metrics::count_resume(match outcome {
                WelcomeOutcome::NewReplayUnavailable => "replay_unavailable",
                _ => "expired",
            });
            let sref = new_session(worker, user, conn, hello_at).await?;
            // The client asked for its old session, not for a new one: if
            // this one is never used, it is not kept after the connection.
            if let Some(session) = worker.state.borrow_mut().sessions.get_mut(sref) {
                session.set_disposable();
            }
            Ok(established(sref, outcome))
        }
    }
}

/// While a new process takes over, this one makes no session state it
/// would not ship: a HELLO is sent on to the new process (GOAWAY 502 with
/// a short, spread-out reconnect hint). Checked when the handshake starts
/// and again right before a session is attached, with no await in between:
/// the freeze, which sends every attached session away, runs on the same
/// thread, so a session is either attached before it (and sent away by it)
/// or refused here.
fn refuse_while_handing_over(worker: &Worker) -> Result<(), Reject> {
    if *worker.shared.phase.borrow() == Phase::HandingOver {
        crate::metrics::count_handshake_refused_for_upgrade();
        return Err(Reject::GoAway(
            ErrorCode::Upgrading,
            rand::random_range(50..1000),
        ));
    }
    Ok(())
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
    /// A connection whose HELLO came later owns the session: refuse (303).
    Superseded,
    /// Refused for another reason (the process is handing over).
    Refused(Reject),
}

impl From<WelcomeOutcome> for ResumeFailed {
    fn from(outcome: WelcomeOutcome) -> Self {
        Self::New(outcome)
    }
}

/// Each worker keeps at most its share of `limits.max_sessions`.
fn sessions_per_worker(max_sessions: usize, workers: usize) -> usize {
    max_sessions.div_ceil(workers.max(1))
}

async fn new_session(
    worker: &Worker,
    user: Option<String>,
    conn: u64,
    hello_at: Instant,
) -> Result<SessionRef, Reject> {
    let settings = worker.settings();
    let cap = sessions_per_worker(settings.max_sessions, worker.mesh.len());
    while worker.state.borrow().sessions.len() >= cap {
        let evicted = worker.state.borrow_mut().evict_oldest_detached();
        let Some(channels) = evicted else {
            return Err(Reject::Error(
                ErrorCode::TooManyConnections,
                "the gateway holds as many sessions as limits.max_sessions allows; retry later"
                    .into(),
            ));
        };
        worker.counters.borrow_mut().sessions_evicted += 1;
        worker.unsubscribe_all(channels).await;
    }
    let mut session = Session::new(
        SessionId(rand::random()),
        ResumeSecret(rand::random()),
        user,
        settings.replay,
        conn,
    );
    session.set_hello_at(hello_at);
    refuse_while_handing_over(worker)?;
    Ok(worker.state.borrow_mut().sessions.insert(session))
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
    hello_at: Instant,
) -> Result<SessionRef, ResumeFailed> {
    let (sref, moved) = locate(worker, resume, user, hello_at).await?;
    if let Err(reject) = refuse_while_handing_over(worker) {
        // It stays detached here, and goes to the new process with the
        // rest.
        return Err(ResumeFailed::Refused(reject));
    }
    let owner_ok = |session: &Session| user.is_none_or(|u| session.user() == Some(u));
    let resumed = {
        let mut state = worker.state.borrow_mut();
        let session = state
            .sessions
            .get_mut(sref)
            .ok_or(WelcomeOutcome::NewSessionExpired)?;
        if !owner_ok(session) {
            Err(ResumeFailed::OtherUser)
        } else if session.is_newer_than(hello_at) {
            Err(ResumeFailed::Superseded)
        } else {
            match session.resume_from(resume.last_received_seq) {
                Ok(()) => {
                    session.attach(conn);
                    session.set_hello_at(hello_at);
                    Ok(())
                }
                Err(_) => Err(ResumeFailed::New(WelcomeOutcome::NewReplayUnavailable)),
            }
        }
    };
    match resumed {
        Ok(()) => {}
        Err(refused @ (ResumeFailed::OtherUser | ResumeFailed::Superseded)) => {
            // Untouched and detached (or still attached to its own
            // connection). One that moved here stays here, listening
            // again, for its owner.
            if moved {
                resubscribe_moved(worker, sref).await;
            }
            return Err(refused);
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

/// How long a resume keeps looking for a session that is moving between
/// workers before it gives up on it.
const MOVE_WAIT: Duration = Duration::from_secs(3);
/// How long it waits before asking again.
const MOVE_RETRY: Duration = Duration::from_millis(1);

/// Finds the session: on this worker, on another worker (it moves here),
/// or, during an upgrade, in the old process (it is pulled over). Returns
/// whether it moved.
///
/// A session between two workers is always somewhere: the worker it left
/// remembers where it went, and the worker receiving it says so. A resume
/// that meets it in flight asks again until it lands, so it is never told
/// the session expired; and a HELLO older than the one that took the
/// session last never takes it back.
async fn locate(
    worker: &Rc<Worker>,
    resume: &ResumeRequest,
    user: Option<&str>,
    hello_at: Instant,
) -> Result<(SessionRef, bool), ResumeFailed> {
    let id = resume.session_id;
    let give_up = Instant::now() + MOVE_WAIT;
    let mut pulled = false;
    loop {
        let local = {
            let state = worker.state.borrow();
            match state.sessions.find(&id) {
                Some(sref) => Some(Some(sref)),
                None if state.fetching.contains_key(&id) => Some(None),
                None => None,
            }
        };
        match local {
            Some(Some(sref)) => {
                let state = worker.state.borrow();
                let session = state.sessions.get(sref);
                if !session.is_some_and(|s| s.secret_matches(&resume.secret)) {
                    return Err(WelcomeOutcome::NewSessionExpired.into());
                }
                return Ok((sref, false));
            }
            // Another handshake here is fetching it: wait for it to land.
            Some(None) if Instant::now() < give_up => {
                tokio::time::sleep(MOVE_RETRY).await;
                continue;
            }
            Some(None) => return Err(WelcomeOutcome::NewSessionExpired.into()),
            None => {}
        }
        worker.state.borrow_mut().begin_fetch(id);
        let fetched = fetch_from_other_workers(worker, id, resume.secret, user, hello_at).await;
        // `Err(None)`: it came, but its log cannot be rebuilt.
        let landed = match fetched {
            Ok(snapshot) => {
                match Session::from_snapshot(*snapshot, worker.settings().replay, Instant::now()) {
                    Ok(session) => {
                        let mut state = worker.state.borrow_mut();
                        let sref = state.sessions.insert(session);
                        state.end_fetch(id);
                        Ok(sref)
                    }
                    Err(_) => Err(None),
                }
            }
            Err(refused) => Err(Some(refused)),
        };
        if landed.is_err() {
            worker.state.borrow_mut().end_fetch(id);
        }
        match landed {
            Ok(sref) => {
                tracing::debug!(worker = worker.index, session = ?id, "session moved here");
                crate::metrics::count_resume("moved_worker");
                return Ok((sref, true));
            }
            Err(None) => return Err(WelcomeOutcome::NewReplayUnavailable.into()),
            Err(Some(TakeRefused::OtherUser)) => {
                return Err(ResumeFailed::OtherUser);
            }
            Err(Some(TakeRefused::Superseded)) => {
                return Err(ResumeFailed::Superseded);
            }
            Err(Some(TakeRefused::InFlight | TakeRefused::MovedTo(_)))
                if Instant::now() < give_up =>
            {
                tokio::time::sleep(MOVE_RETRY).await;
            }
            Err(Some(TakeRefused::NotHere)) if !pulled => {
                pulled = true;
                match pull_from_old_process(worker, resume).await {
                    Pull::Found(snapshot) => {
                        let session = Session::from_snapshot(
                            *snapshot,
                            worker.settings().replay,
                            Instant::now(),
                        )
                        .map_err(|_| WelcomeOutcome::NewReplayUnavailable)?;
                        crate::metrics::count_resume("moved_worker");
                        return Ok((worker.state.borrow_mut().sessions.insert(session), true));
                    }
                    // It may have arrived with the bulk transfer meanwhile.
                    Pull::NotThere => continue,
                    Pull::NoUpgrade => return Err(WelcomeOutcome::NewSessionExpired.into()),
                }
            }
            Err(Some(_)) => return Err(WelcomeOutcome::NewSessionExpired.into()),
        }
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
    hello_at: Instant,
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
            hello_at: Some(hello_at),
            requester: Some(worker.index),
            reply: tx,
        };
        if links.control.send(msg).await.is_ok() {
            replies.push(rx);
        }
    }
    // The most telling answer wins: a refusal that names the session over
    // one that only says it is on its way, over "not here".
    let rank = |r: &TakeRefused| match r {
        TakeRefused::OtherUser | TakeRefused::Superseded => 3,
        TakeRefused::InFlight | TakeRefused::MovedTo(_) => 2,
        TakeRefused::NotHere => 1,
    };
    let mut refused = TakeRefused::NotHere;
    for rx in replies {
        match rx.await {
            Ok(Ok(snapshot)) => return Ok(snapshot),
            Ok(Err(r)) if rank(&r) > rank(&refused) => refused = r,
            Ok(Err(_)) | Err(_) => {}
        }
    }
    Err(refused)
}

/// A request to hand a session over (see [`give_away`]).
#[derive(Debug)]
pub struct TakeRequest<'a> {
    /// The session.
    pub id: SessionId,
    /// The secret the client presented.
    pub secret: &'a ResumeSecret,
    /// The user resuming it, when checked here.
    pub user: Option<&'a str>,
    /// When the resuming HELLO arrived, when ordered.
    pub hello_at: Option<Instant>,
    /// The worker asking; `None` when the session leaves the process.
    pub requester: Option<usize>,
}

/// Hands a session of this worker over to another one: checks the secret
/// and (when `user` is set) the owner, cuts its connection if it has one,
/// and removes it. Returns the snapshot and the channels to unsubscribe
/// here. The owner is checked here, before anything moves, so that a
/// resume with the secret but another user's token disturbs nothing.
pub fn give_away(
    worker: &Worker,
    request: TakeRequest<'_>,
) -> Result<(SessionSnapshot, Vec<ChannelName>), TakeRefused> {
    let TakeRequest {
        id,
        secret,
        user,
        hello_at,
        requester,
    } = request;
    let mut state = worker.state.borrow_mut();
    let Some(sref) = state.sessions.find(&id) else {
        return Err(if state.fetching.contains_key(&id) {
            TakeRefused::InFlight
        } else if let Some((Some(to), _)) = state.moved_out.get(&id) {
            TakeRefused::MovedTo(*to)
        } else {
            TakeRefused::NotHere
        });
    };
    let session = state.sessions.get(sref).ok_or(TakeRefused::NotHere)?;
    if !session.secret_matches(secret) {
        return Err(TakeRefused::NotHere);
    }
    if user.is_some_and(|u| session.user() != Some(u)) {
        return Err(TakeRefused::OtherUser);
    }
    if hello_at.is_some_and(|at| session.is_newer_than(at)) {
        return Err(TakeRefused::Superseded);
    }
    let (session, channels) = state.remove_session(sref).ok_or(TakeRefused::NotHere)?;
    state.moved_out.insert(id, (requester, Instant::now()));
    Ok((session.snapshot(), channels))
}
