//! `resume`: the echo traffic of [`super::echo`] while each session's
//! transport is cut abruptly at random moments (`Client::kill_transport`,
//! on average every `--cut-interval`). The SDK reconnects and resumes; the
//! run passes only if every message still arrives exactly once and in
//! order, and no session is lost.

use std::sync::Arc;
use std::time::Duration;

use super::echo::{self, EchoOptions};
use super::{Ctx, Outcome};

/// Runs `resume`.
pub async fn run(ctx: Arc<Ctx>, cut_interval: Duration) -> anyhow::Result<Outcome> {
    echo::run_with(
        ctx,
        EchoOptions {
            closed_loop: false,
            cut_interval: Some(cut_interval),
        },
        "resume",
    )
    .await
}
