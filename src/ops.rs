//! `petportrait queue …`: what an operator needs to see and do with the queue, as text
//! or, with `--json`, one JSON document per command.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::queue::JobQueue;
use serde_json::json;

use crate::cli::{CreditsCommand, GenerationCommand, PolicyCommand, QueueCommand, UsersCommand};
use crate::commands::prepare_data_dir;

pub async fn queue_command(config: Config, command: QueueCommand, json: bool) -> anyhow::Result<()> {
    prepare_data_dir(&config)?;
    let queue = JobQueue::connect(&config).await.context("connecting to the queue")?;
    let result = run(&queue, command, json).await;
    queue.close().await;
    result
}

/// `petportrait generation show|cancel ID`.
pub async fn generation_command(config: Config, command: GenerationCommand, json: bool) -> anyhow::Result<()> {
    let services = connect(&config).await?;
    let result = match command {
        GenerationCommand::Show { id } => petportrait::operator::generation_show(&services, &id).await,
        GenerationCommand::Cancel { id } => petportrait::operator::generation_cancel(&services, &id).await,
        GenerationCommand::Retry { id } => petportrait::operator::generation_retry(&services, &id).await,
    };
    services.close().await;
    print_report(&result?, json)
}

/// `petportrait users show WHO [--personal]`.
pub async fn users_command(config: Config, command: UsersCommand, json: bool) -> anyhow::Result<()> {
    let services = connect(&config).await?;
    let result = match command {
        UsersCommand::Show { who, personal } => petportrait::operator::user_show(&services, &who, personal).await,
    };
    services.close().await;
    print_report(&result?, json)
}

/// `petportrait migrate --status`: every migration and whether it is applied; exits
/// with an error when some are pending, so a deploy script can wait on it.
pub async fn migration_status(config: Config, json: bool) -> anyhow::Result<()> {
    prepare_data_dir(&config)?;
    let db = petportrait_core::db::Db::connect(&config.database).await.context("connecting to the database")?;
    let states = db.migration_status().await.context("reading the applied migrations")?;
    db.close().await;
    let pending = states.iter().filter(|m| !m.applied).count();
    if json {
        print_json(&json!({"migrations": states, "pending": pending}))?;
    } else {
        for m in &states {
            println!("{} {} {}", m.version, if m.applied { "applied" } else { "PENDING" }, m.description);
        }
        println!("{} applied, {pending} pending", states.len() - pending);
    }
    anyhow::ensure!(pending == 0, "{pending} migrations are pending: run `petportrait migrate`");
    Ok(())
}

/// The scheduler's work an operator may run now.
pub enum SchedulerWork {
    Purge,
    Sweep,
}

/// `petportrait purge` and `petportrait sweep`.
pub async fn scheduler_command(config: Config, work: SchedulerWork, json: bool) -> anyhow::Result<()> {
    let services = connect(&config).await?;
    let result = match work {
        SchedulerWork::Purge => petportrait::operator::purge_now(&config, &services).await,
        SchedulerWork::Sweep => petportrait::operator::sweep_now(&config, &services).await,
    };
    services.close().await;
    print_report(&result?, json)
}

async fn connect(config: &Config) -> anyhow::Result<petportrait_core::services::Services> {
    prepare_data_dir(config)?;
    petportrait_core::services::Services::connect(config, petportrait_core::services::SchemaPolicy::RequireCurrent)
        .await
        .context("connecting services (run `petportrait migrate` first)")
}

/// A report as JSON, or as `key: value` lines (nested objects flattened with dots).
fn print_report(report: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(report);
    }
    fn lines(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    lines(&name, inner, out);
                }
            }
            serde_json::Value::String(text) => out.push(format!("{prefix}: {text}")),
            other => out.push(format!("{prefix}: {other}")),
        }
    }
    let mut out = Vec::new();
    lines("", report, &mut out);
    println!("{}", out.join("\n"));
    Ok(())
}

/// `petportrait credits grant|revoke|show`.
pub async fn credits_command(config: Config, command: CreditsCommand) -> anyhow::Result<()> {
    use petportrait_core::db::Adjustment;
    use petportrait_core::ids::UserId;
    use petportrait_core::time::{now_ms, rfc3339};
    prepare_data_dir(&config)?;
    let db = petportrait_core::db::Db::connect(&config.database).await.context("connecting to the database")?;
    db.ensure_schema_current().await.context("checking the schema (run `petportrait migrate` first)")?;
    let parse = |user: &str| UserId::parse(user).with_context(|| format!("{user:?} is not a user id (usr_…)"));
    let adjust = |user: UserId, amount: i64, reason: String| {
        let db = db.clone();
        async move {
            anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
            match db.adjust_credits(&user, amount, reason.trim(), now_ms()).await? {
                Adjustment::Applied { balance, held } => println!("{user}: balance {balance}, held {held}"),
                Adjustment::Insufficient => anyhow::bail!("{user} does not have {} credits free to revoke", -amount),
                Adjustment::NoSuchUser => anyhow::bail!("no user {user}"),
            }
            anyhow::Ok(())
        }
    };
    match command {
        CreditsCommand::Grant { user, amount, reason } => adjust(parse(&user)?, i64::from(amount), reason).await?,
        CreditsCommand::Revoke { user, amount, reason } => adjust(parse(&user)?, -i64::from(amount), reason).await?,
        CreditsCommand::Reconcile => {
            let stripe = config.payments.stripe.clone().map(petportrait_core::stripe::StripeClient::new);
            let report = petportrait_scheduler::reconcile(&config, &db, stripe.as_ref(), now_ms()).await?;
            println!(
                "accounts checked {}\nbalances differing from their ledger {}\npaid Stripe sessions checked {}\n\
                 paid sessions applied now {}",
                report.users_checked, report.balance_differences, report.sessions_checked, report.sessions_applied
            );
            if let Some(error) = report.stripe_error {
                anyhow::bail!("Stripe's sessions could not be listed: {error}");
            }
            if report.balance_differences > 0 {
                anyhow::bail!("balances differ from their ledger (the log names the accounts)");
            }
        }
        CreditsCommand::Show { user } => {
            let user = parse(&user)?;
            let row = db.get_user(&user).await?.with_context(|| format!("no user {user}"))?;
            println!("{user}: balance {}, held {}", row.credits_balance, row.credits_held);
            for entry in db.list_ledger(&user, None, 10).await? {
                println!(
                    "{}\t{:?}\t{}\t{}",
                    rfc3339(entry.created_at),
                    entry.kind,
                    entry.amount,
                    entry.generation_id.unwrap_or_default()
                );
            }
        }
    }
    db.close().await;
    Ok(())
}

/// `petportrait policy publish|list`.
pub async fn policy_command(config: Config, command: PolicyCommand) -> anyhow::Result<()> {
    use petportrait_core::time::{now_ms, parse_rfc3339, rfc3339};
    prepare_data_dir(&config)?;
    let db = petportrait_core::db::Db::connect(&config.database).await.context("connecting to the database")?;
    db.ensure_schema_current().await.context("checking the schema (run `petportrait migrate` first)")?;
    match command {
        PolicyCommand::Publish { version, effective_at, url } => {
            let at = parse_rfc3339(&effective_at)
                .with_context(|| format!("--effective-at {effective_at:?} is not RFC 3339 (2027-01-15T00:00:00Z)"))?;
            anyhow::ensure!(
                !version.trim().is_empty() && version.len() <= 64,
                "the version must be 1 to 64 characters"
            );
            anyhow::ensure!(
                url.starts_with('/') || url.starts_with("https://"),
                "--url must be a path under PUBLIC_URL or an https URL"
            );
            anyhow::ensure!(
                db.publish_policy(version.trim(), at, &url, now_ms()).await?,
                "version {version} is published already; a published version never changes"
            );
            println!("policy {version} published, in force from {}", rfc3339(at));
        }
        PolicyCommand::List => {
            for p in db.list_policies().await? {
                println!("{}\tin force from {}\t{}", p.version, rfc3339(p.effective_at), p.url);
            }
        }
    }
    db.close().await;
    Ok(())
}

async fn run(queue: &JobQueue, command: QueueCommand, json: bool) -> anyhow::Result<()> {
    match command {
        QueueCommand::Stats => {
            let c = queue.counts().await?;
            if json {
                print_json(&c)?;
            } else {
                println!(
                    "ready {}\ndelayed {}\nrunning {}\ndead {}\nfinished (kept) {}",
                    c.ready, c.delayed, c.active, c.dead, c.done
                );
            }
        }
        QueueCommand::Dead { limit } => {
            let dead = queue.dead_jobs(0, limit).await?;
            if json {
                print_json(&dead)?;
            } else if dead.is_empty() {
                println!("the dead set is empty");
            } else {
                for job in dead {
                    println!(
                        "{}\tgeneration {}\tattempts {}\tdied at {}\t{}",
                        job.task,
                        job.generation_id.as_deref().unwrap_or("?"),
                        job.attempts,
                        petportrait_core::time::rfc3339(job.died_at_ms),
                        job.error
                    );
                }
            }
        }
        QueueCommand::Replay { tasks } => {
            let replayed = queue.replay(&tasks).await?;
            if json {
                print_json(&json!({ "replayed": replayed, "asked": tasks.len() }))?;
            } else {
                println!("replayed {replayed} of {} (the others are not in the dead set)", tasks.len());
            }
        }
        QueueCommand::ReplayAll => {
            let replayed = queue.replay_all_dead().await?;
            if json {
                print_json(&json!({ "replayed": replayed }))?;
            } else {
                println!("replayed {replayed}");
            }
        }
        QueueCommand::PurgeDead => {
            let purged = queue.purge_dead().await?;
            if json {
                print_json(&json!({ "purged": purged }))?;
            } else {
                println!("purged {purged}");
            }
        }
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
