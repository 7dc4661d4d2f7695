//! `petportrait queue …`: what an operator needs to see and do with the queue.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::queue::JobQueue;

pub async fn queue_command(config: Config, args: Vec<String>) -> anyhow::Result<()> {
    let queue = JobQueue::connect(&config).await.context("connecting to the queue")?;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["stats"] => {
            let c = queue.counts().await?;
            println!(
                "ready {}\ndelayed {}\nrunning {}\ndead {}\nfinished (kept) {}",
                c.ready, c.delayed, c.active, c.dead, c.done
            );
        }
        ["dead", rest @ ..] => {
            let limit = match rest {
                [] => 50,
                [n] => n.parse().with_context(|| format!("LIMIT: expected a number, got {n:?}"))?,
                _ => anyhow::bail!("usage: petportrait queue dead [LIMIT]"),
            };
            let dead = queue.dead_jobs(0, limit).await?;
            if dead.is_empty() {
                println!("the dead set is empty");
            }
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
        ["replay", tasks @ ..] if !tasks.is_empty() => {
            let tasks: Vec<String> = tasks.iter().map(|t| (*t).to_owned()).collect();
            let replayed = queue.replay(&tasks).await?;
            println!("replayed {replayed} of {} (the others are not in the dead set)", tasks.len());
        }
        ["replay-all"] => println!("replayed {}", queue.replay_all_dead().await?),
        ["purge-dead"] => println!("purged {}", queue.purge_dead().await?),
        _ => anyhow::bail!("usage: petportrait queue stats | dead [LIMIT] | replay TASK... | replay-all | purge-dead"),
    }
    queue.close().await;
    Ok(())
}
