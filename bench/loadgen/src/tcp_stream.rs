//! One long TCP stream through a TLS-terminating forwarder (moat tls, stunnel): upload to the
//! upstream's sink or download from its source, and the throughput.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::TlsArgs;
use crate::tls::Dialer;
use crate::upstream::{CHUNK, DOWNLOAD, UPLOAD, ZEROS};

/// Flags of `loadgen tcp`.
#[derive(Debug, clap::Args)]
pub struct TcpArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Bytes to move.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// `upload` (client → upstream) or `download` (upstream → client).
    #[arg(long, value_parser = ["upload", "download"])]
    direction: String,
    /// Give up after this long.
    #[arg(long, value_parser = crate::parse_duration, default_value = "120s")]
    timeout: Duration,
}

pub async fn run(args: TcpArgs) -> anyhow::Result<()> {
    let dialer = Dialer::new(&args.tls, &[])?;
    let started = Instant::now();
    tokio::time::timeout(args.timeout, transfer(&dialer, &args))
        .await
        .map_err(|_| anyhow::anyhow!("transfer not done within {:?}", args.timeout))??;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "mbps={:.1} bytes={} seconds={seconds:.2}",
        args.bytes as f64 / seconds / 1e6,
        args.bytes
    );
    Ok(())
}

async fn transfer(dialer: &Dialer, args: &TcpArgs) -> anyhow::Result<()> {
    let mut stream = dialer.dial().await?;
    let mut header = [0u8; 9];
    header[0] = if args.direction == "upload" {
        UPLOAD
    } else {
        DOWNLOAD
    };
    header[1..].copy_from_slice(&args.bytes.to_be_bytes());
    stream.write_all(&header).await?;
    if args.direction == "upload" {
        let mut left = args.bytes;
        while left > 0 {
            let now = left.min(CHUNK as u64) as usize;
            stream.write_all(&ZEROS[..now]).await.context("sending")?;
            left -= now as u64;
        }
        stream.flush().await?;
        let mut ack = [0u8; 8];
        stream
            .read_exact(&mut ack)
            .await
            .context("waiting for the upstream's count")?;
        let counted = u64::from_be_bytes(ack);
        anyhow::ensure!(
            counted == args.bytes,
            "upstream counted {counted} bytes, sent {}",
            args.bytes
        );
    } else {
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        while received < args.bytes {
            let read = stream.read(&mut buffer).await.context("receiving")?;
            anyhow::ensure!(read > 0, "stream ended after {received} bytes");
            received += read as u64;
        }
        // The upstream sends exactly what was asked; more means the stream carried other bytes.
        anyhow::ensure!(
            received == args.bytes,
            "received {received} bytes, asked for {}",
            args.bytes
        );
    }
    Ok(())
}
