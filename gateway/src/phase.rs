//! The server lifecycle as an explicit phase. Signals map to phase changes
//! (SIGTERM/SIGINT → Draining); every worker watches the phase.

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Binding listeners and starting workers.
    Starting,
    /// Accepting and serving.
    Running,
    /// Upgrade, old side: a new process is taking the sockets and the
    /// sessions; not accepting. Goes back to Running if it fails.
    HandingOver,
    /// Not accepting; clients are told GOAWAY and leave.
    Draining,
    /// Every worker has finished.
    Stopped,
}

impl Phase {
    /// Whether the gateway takes new connections in this phase.
    pub fn is_accepting(self) -> bool {
        self == Phase::Running
    }

    /// Whether listeners must stop accepting: true from Draining on (and
    /// false while Starting, when the listeners already queue clients).
    pub fn stops_accepting(self) -> bool {
        matches!(self, Phase::Draining | Phase::Stopped)
    }

    /// Whether moving to `next` is allowed.
    pub fn can_move_to(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (Starting, Running)
                | (Starting, Stopped)
                | (Running, Draining)
                | (Running, HandingOver)
                | (HandingOver, Running)
                | (HandingOver, Draining)
                | (Draining, Stopped)
        )
    }

    /// A stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::HandingOver => "handing_over",
            Phase::Draining => "draining",
            Phase::Stopped => "stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_transitions_are_allowed() {
        assert!(Phase::Starting.can_move_to(Phase::Running));
        assert!(Phase::Running.can_move_to(Phase::Draining));
        assert!(Phase::Draining.can_move_to(Phase::Stopped));
        assert!(!Phase::Draining.can_move_to(Phase::Running));
        assert!(!Phase::Stopped.can_move_to(Phase::Running));
        assert!(Phase::Running.can_move_to(Phase::HandingOver));
        assert!(Phase::HandingOver.can_move_to(Phase::Running), "rollback");
        assert!(!Phase::HandingOver.is_accepting());
        assert!(
            !Phase::HandingOver.stops_accepting(),
            "listeners pause, not close"
        );
        assert!(Phase::Running.is_accepting());
        assert!(!Phase::Draining.is_accepting());
        assert!(!Phase::Starting.stops_accepting());
        assert!(Phase::Draining.stops_accepting());
    }
}
