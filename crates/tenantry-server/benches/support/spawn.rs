//! Starts the `tenantry` binary for the HTTP benchmarks and reads the address it listens
//! on.

use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Spawns the server, with `config` (a TOML file) when given.
pub async fn spawn_with(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Res<(Child, SocketAddr)> {
    // `TENANTRY_BENCH_BIN` runs another build (an older commit's, to compare).
    let bin = std::env::var_os("TENANTRY_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tenantry").into());
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("TENANTRY_ADMIN_KEY", "bench-admin")
        .env_remove("TENANTRY_CONFIG")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next_line().await?.ok_or("server exited")?;
        if let Some(rest) = line.strip_prefix("tenantry listening on http://") {
            break rest.trim().parse()?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}
