//! `session-lookup [--requests N] [--concurrency C]`: what authenticating one request
//! costs in distributed mode, with the session in PostgreSQL (today: one query joining
//! `sessions` and `users`) against a session in Redis (a `GET` of the session key, then
//! the user's row from PostgreSQL, which every handler needs anyway).
//!
//! It starts the real app in distributed mode (as the system tests do, with their
//! PostgreSQL and Redis), signs a user in, and times both ways side by side in one
//! run, alternating rounds, each request as a handler would make it. It prints the
//! median and 99th percentile per lookup in microseconds and the throughput.
//!
//! ```text
//! cargo run --release -p petportrait-latency-bench --bin session-lookup
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use petportrait_core::ids::UserId;
use petportrait_core::time::now_ms;
use petportrait_tests::{Mode, TestApp};

#[derive(Parser)]
#[command(name = "session-lookup", about = "Session lookup: PostgreSQL against Redis")]
struct Args {
    /// Lookups per way and round.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Lookups in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Rounds; the ways alternate, so drift on a shared machine hits both.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn sha256_b64(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(text.as_bytes()))
}

struct Summary {
    median_us: f64,
    p99_us: f64,
    per_second: f64,
}

async fn measure<F, Fut>(requests: usize, concurrency: usize, one: F) -> anyhow::Result<Summary>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let one = one.clone();
        let count = requests / concurrency + usize::from(worker < requests % concurrency);
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let at = Instant::now();
                one().await?;
                times.push(at.elapsed());
            }
            anyhow::Ok(times)
        });
    }
    let mut all: Vec<Duration> = Vec::with_capacity(requests);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    Ok(Summary { median_us: at(0.5), p99_us: at(0.99), per_second: all.len() as f64 / elapsed.as_secs_f64() })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = TestApp::spawn(Mode::Distributed, &[]).await;
    let user = app.user("Bench").await;
    let user_id = UserId::from_db(user.user_id().await);

    // A session as the API stores it, in both places.
    let token = "bench-session-token-0123456789abcdefghijklmnopq";
    let hash = sha256_b64(token);
    let db = app.services.db.clone();
    db.insert_session(&hash, &user_id, now_ms(), now_ms() + 86_400_000).await?;
    let redis_url = app.config.queue.redis_url.clone().context("distributed mode has Redis")?;
    let client = redis::Client::open(redis_url)?;
    let redis = redis::aio::ConnectionManager::new(client).await?;
    let key = format!("{}:session:{hash}", app.config.queue.prefix);
    redis::cmd("SET")
        .arg(&key)
        .arg(user_id.as_str())
        .arg("EX")
        .arg(86_400)
        .query_async::<()>(&mut redis.clone())
        .await?;

    let by_database = {
        let (db, hash) = (db.clone(), hash.clone());
        move || {
            let (db, hash) = (db.clone(), hash.clone());
            async move {
                let now = now_ms();
                db.find_session_user(&hash, now, now - 7 * 86_400_000).await?.context("the session")?;
                anyhow::Ok(())
            }
        }
    };
    let by_redis = {
        let (db, redis, key) = (db.clone(), redis.clone(), key.clone());
        move || {
            let (db, mut redis, key) = (db.clone(), redis.clone(), key.clone());
            async move {
                let id: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
                let id = UserId::from_db(id.context("the session")?);
                db.get_user(&id).await?.context("the user")?;
                anyhow::Ok(())
            }
        }
    };

    println!("| round | way | median µs | p99 µs | lookups/s |");
    println!("|---|---|---:|---:|---:|");
    for round in 1..=args.rounds {
        let ways: [(&str, bool); 2] = if round % 2 == 1 {
            [("PostgreSQL", true), ("Redis + user row", false)]
        } else {
            [("Redis + user row", false), ("PostgreSQL", true)]
        };
        for (name, database) in ways {
            let s = if database {
                measure(args.requests, args.concurrency, by_database.clone()).await?
            } else {
                measure(args.requests, args.concurrency, by_redis.clone()).await?
            };
            println!("| {round} | {name} | {:.0} | {:.0} | {:.0} |", s.median_us, s.p99_us, s.per_second);
        }
    }
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis.clone()).await?;
    app.stop().await;
    Ok(())
}
