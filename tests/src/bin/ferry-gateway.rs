//! The gateway binary, rebuilt inside the test package so that cargo builds
//! it before the end-to-end tests run.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::main()
}
