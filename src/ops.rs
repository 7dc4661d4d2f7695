//! `petportrait queue …`: what an operator needs to see and do with the queue, as text
//! or, with `--json`, one JSON document per command.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::queue::JobQueue;
use serde_json::json;

use crate::cli::QueueCommand;
use crate::commands::prepare_data_dir;

pub async fn queue_command(config: Config, command: QueueCommand, json: bool) -> anyhow::Result<()> {
    prepare_data_dir(&config)?;
    let queue = JobQueue::connect(&config).await.context("connecting to the queue")?;
    let result = run(&queue, command, json).await;
    queue.close().await;
    result
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
