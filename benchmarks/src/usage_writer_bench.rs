//! The usage writer's sustained insert rate: batches of usage events (each with its
//! ledger debit and balance update, exactly as the proxy's writer commits them) into
//! a fresh database, one transaction per batch, as fast as the store takes them.
//!
//! `usage-writer-bench --store-url postgres://... --events 200000 --batch 4096`

use std::io::Write;
use std::time::Instant;

use clap::Parser;
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::{KeyLimits, NanoUsd, UsageEvent};
use tokenroute_store::{LedgerKind, NewKey, Store};

#[derive(Parser)]
struct Args {
    /// The store to write to (a fresh, empty database).
    #[arg(long)]
    store_url: String,
    /// Events in all.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per transaction (the writer's `usage.batch-size`).
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Accounts the events are spread over.
    #[arg(long, default_value_t = 100)]
    accounts: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = Store::open(&args.store_url, 4).await?;
    let mut keys = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        let account = store
            .upsert_account_by_email(&format!("bench{i}@example.com"))
            .await?;
        store
            .book(
                &account.id,
                LedgerKind::Adjustment,
                NanoUsd::parse_usd("1000")?,
                &format!("grant-{i}"),
                None,
            )
            .await?;
        let key = ApiKey::generate();
        let record = store
            .create_key(
                &NewKey {
                    account_id: &account.id,
                    name: "bench",
                    limits: KeyLimits::default(),
                },
                &key,
            )
            .await?;
        keys.push((account.id, record.id));
    }
    let run = uuid_prefix();
    let events: Vec<UsageEvent> = (0..args.events)
        .map(|i| {
            let (account_id, key_id) = keys[i % keys.len()].clone();
            UsageEvent {
                request_id: format!("{run}-{i}"),
                account_id,
                key_id,
                created_at_ms: now_ms(),
                model: "bench/gpt-4o-mini".into(),
                provider: "bench".into(),
                upstream_model: "gpt-4o-mini".into(),
                input_tokens: 24,
                output_tokens: 8,
                cost: NanoUsd(8_400),
                status: 200,
                streamed: i.is_multiple_of(2),
                estimated: false,
                cancelled: false,
                duration_ms: 3,
                route: String::new(),
                attempts: 1,
                cached_input_tokens: 0,
            }
        })
        .collect();
    let started = Instant::now();
    let mut inserted = 0;
    for batch in events.chunks(args.batch) {
        inserted += store.record_usage(batch).await?.inserted;
    }
    let secs = started.elapsed().as_secs_f64();
    // One line, machine-readable, for run.sh.
    writeln!(
        std::io::stdout(),
        "usage_writer events={} batch={} inserted={} seconds={:.3} events_per_second={:.0}",
        args.events,
        args.batch,
        inserted,
        secs,
        args.events as f64 / secs
    )?;
    let report = store.verify_ledger().await?;
    if !report.discrepancies.is_empty() {
        return Err(format!("{} ledger discrepancies", report.discrepancies.len()).into());
    }
    Ok(())
}

fn uuid_prefix() -> String {
    format!("{:x}", now_ms())
}
