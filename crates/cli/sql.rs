//! `trailql query` and `trailql shell`.

/// Run SQL over a dataset or raw archive and print the result.
#[derive(clap::Args)]
pub struct QueryArgs {}

/// Interactive SQL shell.
#[derive(clap::Args)]
pub struct ShellArgs {}

pub fn query(_args: QueryArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}

pub fn shell(_args: ShellArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not built yet")
}
