//! Client SDK (in progress).
