//! `dispatcher`: generates, hashes and sends the codes.

/// mimalloc: the services allocate many small, short-lived buffers per request
/// and message, where it is markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::process::main::<dispatcher::Dispatcher>().await
}
