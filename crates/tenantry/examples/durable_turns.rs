//! What an acknowledged call means under each durability, shown with a real crash.
//!
//! A child process (this example, run again) appends three entries to a ledger in an
//! `EveryTurn` manager and three to one in an `OnHibernate` manager, on a redb file; once
//! it says so, the parent kills it with SIGKILL (no destructor, no hibernation), opens the
//! same file and reads both ledgers back.
//!
//! Run: `cargo run --example durable_turns`

use serde::{Deserialize, Serialize};
use tenantry::schemars::JsonSchema;
use tenantry::store::RedbStore;
use tenantry::{
    Context, Durability, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig,
    Message, Partition, Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Ledger {
    entries: Vec<u64>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Append {
    id: u64,
}
impl Message for Append {
    const NAME: &'static str = "append";
    type Reply = usize;
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Entries;
impl Message for Entries {
    const NAME: &'static str = "entries";
    const READ_ONLY: bool = true;
    type Reply = Vec<u64>;
}

impl Factory for Ledger {
    const NAME: &'static str = "ledger";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Append>().add::<Entries>();
    }
}

impl Handler<Append> for Ledger {
    async fn handle(&mut self, m: Append, _: &mut Context) -> Result<usize, HandlerError> {
        self.entries.push(m.id);
        Ok(self.entries.len())
    }
}

impl Handler<Entries> for Ledger {
    async fn handle(&mut self, _: Entries, _: &mut Context) -> Result<Vec<u64>, HandlerError> {
        Ok(self.entries.clone())
    }
}

const CHILD: &str = "TENANTRY_EXAMPLE_CRASH_STORE";
const MODES: [(&str, Durability); 2] = [
    ("every_turn", Durability::EveryTurn),
    ("on_hibernate", Durability::OnHibernate),
];

fn runtime(path: &str) -> Result<Runtime, Box<dyn std::error::Error>> {
    let rt = Runtime::new(RedbStore::open(path)?);
    for (name, durability) in MODES {
        rt.register::<Ledger>(name, ManagerConfig::default().durability(durability))?;
    }
    Ok(rt)
}

/// The child: three acknowledged appends per ledger, then it waits to be killed.
async fn write_then_wait(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rt = runtime(path)?;
    let acme = Partition::new("acme")?;
    for (name, _) in MODES {
        let ledger = rt.manager::<Ledger>(name)?.get("books", &acme).await?;
        for id in 1..=3 {
            ledger.call(Append { id }).await?;
        }
        println!("{name}: 3 appends acknowledged");
    }
    println!("done");
    std::future::pending().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        return write_then_wait(&path).await;
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledgers.redb");
    let path = path.to_str().ok_or("temp path is not UTF-8")?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD, path)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
        let line = line?;
        if line == "done" {
            break;
        }
        println!("{line}");
    }
    child.kill()?;
    let status = child.wait()?;
    println!("killed the writer without letting it hibernate ({status})");

    let rt = runtime(path)?;
    let acme = Partition::new("acme")?;
    for (name, _) in MODES {
        let ledger = rt.manager::<Ledger>(name)?.get("books", &acme).await?;
        println!(
            "{name}: after the crash the ledger holds {:?}",
            ledger.call(Entries).await?
        );
    }
    rt.shutdown().await;
    Ok(())
}
