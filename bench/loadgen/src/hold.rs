//! Opens many mTLS connections and keeps them idle, so the harness can read the gateway's memory
//! per connection.

use std::io::Write as _;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::tls::Dialer;
use crate::{TlsArgs, parse_duration};

/// Flags of `loadgen hold`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Handshakes in flight at once while opening.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// How long to hold them once all are open.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    hold: Duration,
}

pub async fn run(args: HoldArgs) -> anyhow::Result<()> {
    let dialer = Rc::new(Dialer::new(&args.tls, &[b"http/1.1"])?);
    let permits = Rc::new(Semaphore::new(args.parallel.max(1)));
    let local = tokio::task::LocalSet::new();
    let (held, failures) = local
        .run_until(async move {
            let opening: Vec<_> = (0..args.connections)
                .map(|_| {
                    let dialer = dialer.clone();
                    let permits = permits.clone();
                    tokio::task::spawn_local(async move {
                        let _permit = permits.acquire().await?;
                        tokio::time::timeout(Duration::from_secs(30), dialer.dial())
                            .await
                            .map_err(|_| anyhow::anyhow!("handshake took over 30s"))?
                    })
                })
                .collect();
            let mut held = Vec::with_capacity(args.connections);
            let mut failures = Vec::new();
            for task in opening {
                match task.await {
                    Ok(Ok(stream)) => held.push(stream),
                    Ok(Err(error)) => failures.push(format!("{error:#}")),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (held, failures)
        })
        .await;
    // The harness waits for this line before it reads the gateway's memory.
    println!("held={} failed={}", held.len(), failures.len());
    if let Some(first) = failures.first() {
        eprintln!("loadgen: first failure: {first}");
    }
    std::io::stdout().flush()?;
    // Memory read with fewer connections than asked would be divided by the wrong count.
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} connections failed to open",
        failures.len(),
        args.connections
    );
    tokio::time::sleep(args.hold).await;
    drop(held);
    Ok(())
}
