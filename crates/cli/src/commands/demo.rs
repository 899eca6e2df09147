//! `moat demo`: a self-contained walk through mTLS (being built; see issue 3).

/// Flags of `moat demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("moat demo is not built yet")
}
