//! A worker's sessions: a slab indexed by small keys, plus an index by id.

use std::collections::HashMap;

use ferry_protocol::SessionId;
use slab::Slab;

use super::state::Session;

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
}

impl SessionRegistry {
    /// Adds a session; returns its reference.
    pub fn insert(&mut self, session: Session) -> SessionRef {
        let id = session.id();
        let key = self.slab.insert(session);
        self.by_id.insert(id, key);
        SessionRef { key, id }
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
