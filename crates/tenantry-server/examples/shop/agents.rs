//! The shop's agents: a cart per customer and a ledger per account, and the application
//! that serves them.

use serde::{Deserialize, Serialize};
use tenantry::params::{Bounded, BoundedText};
use tenantry::schemars::JsonSchema;
use tenantry::{Context, Factory, Handler, HandlerError, Handlers, Identity, Message};
use tenantry_server::Application;

/// The most lines a cart holds.
pub const MAX_LINES: usize = 100;

/// A customer's cart: its lines, durable across hibernation.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    lines: Vec<Line>,
}

/// One line of a cart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The product.
    pub sku: BoundedText<64>,
    /// How many.
    pub qty: Bounded<1, 99>,
}

impl Message for Line {
    const NAME: &'static str = "add";
    const DESCRIPTION: &'static str = "Adds a line; returns how many lines the cart has.";
    type Reply = usize;
}

/// Params of `lines` (none).
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lines {}

impl Message for Lines {
    const NAME: &'static str = "lines";
    const DESCRIPTION: &'static str = "The cart's lines.";
    type Reply = Vec<Line>;
}

impl Factory for Cart {
    const NAME: &'static str = "cart";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Line>().add::<Lines>();
    }
}

impl Handler<Line> for Cart {
    async fn handle(&mut self, line: Line, _: &mut Context) -> Result<usize, HandlerError> {
        if self.lines.len() >= MAX_LINES {
            return Err(HandlerError::conflict(
                "cart_full",
                format!("a cart holds at most {MAX_LINES} lines"),
            ));
        }
        self.lines.push(line);
        Ok(self.lines.len())
    }
}

impl Handler<Lines> for Cart {
    async fn handle(&mut self, _: Lines, _: &mut Context) -> Result<Vec<Line>, HandlerError> {
        Ok(self.lines.clone())
    }
}

/// An account's ledger: a balance in cents that never goes below zero.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    balance: u64,
}

/// Params of `credit` and `debit`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// Cents.
    pub cents: Bounded<1, 1_000_000>,
}

/// Adds to the balance.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Credit(pub Amount);

impl Message for Credit {
    const NAME: &'static str = "credit";
    const DESCRIPTION: &'static str = "Adds to the balance; returns it.";
    type Reply = u64;
}

/// Takes from the balance (refused when it would go below zero).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Debit(pub Amount);

impl Message for Debit {
    const NAME: &'static str = "debit";
    const DESCRIPTION: &'static str = "Takes from the balance; returns it (409 when short).";
    type Reply = u64;
}

impl Factory for Ledger {
    const NAME: &'static str = "ledger";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Credit>().add::<Debit>();
    }
}

impl Handler<Credit> for Ledger {
    async fn handle(&mut self, m: Credit, _: &mut Context) -> Result<u64, HandlerError> {
        self.balance = self.balance.saturating_add(m.0.cents.get());
        Ok(self.balance)
    }
}

impl Handler<Debit> for Ledger {
    async fn handle(&mut self, m: Debit, _: &mut Context) -> Result<u64, HandlerError> {
        let cents = m.0.cents.get();
        self.balance = self.balance.checked_sub(cents).ok_or_else(|| {
            HandlerError::conflict(
                "insufficient_funds",
                format!("the balance is {}, short of {cents}", self.balance),
            )
        })?;
        Ok(self.balance)
    }
}

/// The shop: carts and ledgers, served for every tenant.
pub fn application() -> Application {
    Application::new("shop")
        .agents::<Cart>("carts")
        .agents::<Ledger>("ledgers")
}
