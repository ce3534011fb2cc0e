//! A worker's sessions: a slab indexed by small keys, plus an index by id
//! and the detached sessions in the order they detached (for expiry and
//! eviction without scanning every session).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry_protocol::SessionId;
use slab::Slab;

use super::state::{Attachment, Session};

/// Names one session on one worker. The id guards against a slab key
/// reused by a later session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    /// Slab key.
    pub key: usize,
    /// The session's id.
    pub id: SessionId,
}

/// The sessions of one worker.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    slab: Slab<Session>,
    by_id: HashMap<SessionId, usize>,
    /// Detached sessions, oldest first. An entry is stale once its session
    /// is gone or attached again (or detached anew): stale entries are
    /// skipped when met and pruned when they outnumber the sessions.
    detached: VecDeque<(SessionRef, Instant)>,
}

impl SessionRegistry {
    /// Adds a session; returns its reference.
    pub fn insert(&mut self, session: Session) -> SessionRef {
        let id = session.id();
        let attachment = session.attachment();
        let key = self.slab.insert(session);
        self.by_id.insert(id, key);
        let sref = SessionRef { key, id };
        if let Attachment::Detached { since } = attachment {
            self.push_detached(sref, since);
        }
        sref
    }

    /// Detaches the session from its connection at `now`.
    pub fn detach(&mut self, r: SessionRef, now: Instant) {
        if let Some(session) = self.get_mut(r) {
            session.detach(now);
            self.push_detached(r, now);
        }
    }

    fn push_detached(&mut self, r: SessionRef, since: Instant) {
        self.detached.push_back((r, since));
        if self.detached.len() > 2 * self.slab.len() + 64 {
            let slab = &self.slab;
            self.detached
                .retain(|(r, since)| Self::still_detached(slab, *r, *since));
        }
    }

    fn still_detached(slab: &Slab<Session>, r: SessionRef, since: Instant) -> bool {
        slab.get(r.key)
            .is_some_and(|s| s.id() == r.id && s.attachment() == Attachment::Detached { since })
    }

    /// The session detached longest ago, and since when.
    pub fn oldest_detached(&mut self) -> Option<(SessionRef, Instant)> {
        while let Some(&(r, since)) = self.detached.front() {
            if Self::still_detached(&self.slab, r, since) {
                return Some((r, since));
            }
            self.detached.pop_front();
        }
        None
    }

    /// Detached sessions that have outlived `window` at `now`, oldest
    /// first (they stay in the registry until the caller removes them).
    pub fn expired(&self, now: Instant, window: Duration) -> Vec<SessionRef> {
        self.detached
            .iter()
            .filter(|(r, since)| Self::still_detached(&self.slab, *r, *since))
            .take_while(|(_, since)| now.saturating_duration_since(*since) >= window)
            .map(|(r, _)| *r)
            .collect()
    }

    /// The session `r` names, if it still exists.
    pub fn get(&self, r: SessionRef) -> Option<&Session> {
        self.slab.get(r.key).filter(|s| s.id() == r.id)
    }

    /// The session `r` names, mutably.
    pub fn get_mut(&mut self, r: SessionRef) -> Option<&mut Session> {
        self.slab.get_mut(r.key).filter(|s| s.id() == r.id)
    }

    /// Finds a session by id.
    pub fn find(&self, id: &SessionId) -> Option<SessionRef> {
        self.by_id.get(id).map(|&key| SessionRef { key, id: *id })
    }

    /// Removes a session.
    pub fn remove(&mut self, r: SessionRef) -> Option<Session> {
        self.get(r)?;
        self.by_id.remove(&r.id);
        Some(self.slab.remove(r.key))
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every session, with its reference.
    pub fn iter(&self) -> impl Iterator<Item = (SessionRef, &Session)> {
        self.slab
            .iter()
            .map(|(key, s)| (SessionRef { key, id: s.id() }, s))
    }

    /// Every session, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SessionRef, &mut Session)> {
        self.slab
            .iter_mut()
            .map(|(key, s)| (SessionRef { key, id: s.id() }, s))
    }
}
