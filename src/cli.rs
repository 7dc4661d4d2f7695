//! The command line of the one binary: which role to run, or which operator command.
//! Everything else is configured by environment variables (README.md, `.env.example`).

use clap::{Parser, Subcommand};

/// AI pet portraits as a job-queue service. With no command, runs the whole service in
/// one process (embedded mode). Configuration comes from environment variables (see
/// README.md and .env.example).
#[derive(Debug, Parser)]
#[command(name = "petportrait", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, workers and scheduler in one process (the default)
    All,
    /// Serve the HTTP API (the Procfile's `web` process)
    Api,
    /// Run generation jobs from the queue; start more processes to scale out
    Worker,
    /// Purge expired objects and re-dispatch stalled generations (any number may run)
    Scheduler,
    /// Apply database migrations and exit (the Procfile's `release` step); with
    /// --status, only say which are applied and which are pending
    Migrate {
        /// List every migration and whether it is applied; change nothing
        #[arg(long)]
        status: bool,
        /// With --status: print JSON instead of text
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// Grant or revoke a user's credits (written to the ledger with a reason), or show them
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Publish a new version of the privacy policy, or list the published ones
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Reseal every account's personal fields under the newest ENCRYPTION_KEY (after a rotation)
    Reencrypt,
    /// Serve DATA_DIR/objects as a stand-alone S3-compatible server
    S3Server {
        /// The port to listen on (on HOST)
        #[arg(long, env = "S3_SERVER_PORT", default_value_t = 9000)]
        port: u16,
    },
    /// Show or cancel one generation
    Generation {
        #[command(subcommand)]
        command: GenerationCommand,
        /// Print JSON instead of text
        #[arg(long, global = true)]
        json: bool,
    },
    /// Show an account
    Users {
        #[command(subcommand)]
        command: UsersCommand,
        /// Print JSON instead of text
        #[arg(long, global = true)]
        json: bool,
    },
    /// Purge every expired object now (the scheduler does it every tick)
    Purge {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Dispatch stalled generations again now (the scheduler does it every tick)
    Sweep {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Inspect the job queue and work its dead set
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        /// Print JSON instead of text
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Give USER (a usr_… id) AMOUNT credits
    Grant {
        user: String,
        amount: u32,
        /// Why, kept in the ledger
        #[arg(long)]
        reason: String,
    },
    /// Take AMOUNT credits from USER (never below what running generations hold)
    Revoke {
        user: String,
        amount: u32,
        #[arg(long)]
        reason: String,
    },
    /// USER's balance, held credits and latest ledger entries
    Show { user: String },
    /// Reconcile now: every balance against its ledger, Stripe's paid sessions against
    /// our payments (missing purchases are applied), as the scheduler does daily
    Reconcile,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Publish VERSION, in force from --effective-at (users are asked to accept it then)
    Publish {
        /// The version's name, e.g. 2027-01-15
        version: String,
        /// When it takes effect, RFC 3339 (e.g. 2027-01-15T00:00:00Z); it is not served before
        #[arg(long)]
        effective_at: String,
        /// Where its text is: a path under PUBLIC_URL or a full https URL
        #[arg(long, default_value = "/privacy")]
        url: String,
    },
    /// Every published version, the newest date first
    List,
}

#[derive(Debug, Subcommand)]
pub enum GenerationCommand {
    /// State, attempts, error, credits, times and ids of generation ID (gen_…)
    Show { id: String },
    /// Cancel generation ID as its owner would (credits released or refunded)
    Cancel { id: String },
    /// Run unfinished generation ID again now (a retry's wait or a parking ends)
    Retry { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Credits and counts of what account WHO (a usr_… id or an e-mail address) holds
    Show {
        who: String,
        /// Also print the name and e-mail address
        #[arg(long)]
        personal: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Jobs ready, delayed (retries), running, dead and recently finished
    Stats,
    /// The dead set, oldest first
    Dead {
        /// How many jobs to show
        #[arg(default_value_t = 50)]
        limit: usize,
    },
    /// Put dead jobs back in line with fresh attempts
    Replay {
        /// Task ids, as `queue dead` shows them
        #[arg(required = true)]
        tasks: Vec<String>,
    },
    /// Replay the whole dead set
    ReplayAll,
    /// Delete the whole dead set
    PurgeDead,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn credit_adjustments_need_a_reason() {
        assert!(Cli::try_parse_from(["petportrait", "credits", "grant", "usr_x", "5"]).is_err());
        let parsed = Cli::try_parse_from(["petportrait", "credits", "revoke", "usr_x", "5", "--reason", "dup"]);
        assert!(matches!(
            parsed.expect("parses").command,
            Some(Command::Credits { command: CreditsCommand::Revoke { amount: 5, .. } })
        ));
        assert!(Cli::try_parse_from(["petportrait", "credits", "grant", "usr_x", "-5", "--reason", "x"]).is_err());
        let parsed = Cli::try_parse_from(["petportrait", "credits", "reconcile"]).expect("parses");
        assert!(matches!(parsed.command, Some(Command::Credits { command: CreditsCommand::Reconcile })));
    }

    #[test]
    fn operator_commands_take_ids_and_json() {
        let cli = Cli::try_parse_from(["petportrait", "generation", "show", "gen_x", "--json"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Generation { command: GenerationCommand::Show { .. }, json: true })
        ));
        assert!(Cli::try_parse_from(["petportrait", "generation", "cancel"]).is_err(), "cancel needs an id");
        let cli = Cli::try_parse_from(["petportrait", "sweep", "--json"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Sweep { json: true })));
        assert!(matches!(
            Cli::try_parse_from(["petportrait", "purge"]).expect("parses").command,
            Some(Command::Purge { json: false })
        ));
    }

    #[test]
    fn migrate_can_only_report() {
        let cli = Cli::try_parse_from(["petportrait", "migrate", "--status", "--json"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Migrate { status: true, json: true })));
        let cli = Cli::try_parse_from(["petportrait", "migrate"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Migrate { status: false, json: false })));
        assert!(Cli::try_parse_from(["petportrait", "migrate", "--json"]).is_err(), "--json goes with --status");
    }

    #[test]
    fn no_command_means_the_whole_service() {
        assert!(Cli::try_parse_from(["petportrait"]).expect("parses").command.is_none());
    }

    #[test]
    fn every_role_is_a_subcommand() {
        for (word, expected) in [("all", "All"), ("api", "Api"), ("worker", "Worker"), ("scheduler", "Scheduler")] {
            let cli = Cli::try_parse_from(["petportrait", word]).expect("parses");
            assert_eq!(format!("{:?}", cli.command.expect("a command")), expected);
        }
    }

    #[test]
    fn queue_commands_take_their_arguments_and_json() {
        let cli = Cli::try_parse_from(["petportrait", "queue", "dead", "7", "--json"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Queue { command: QueueCommand::Dead { limit: 7 }, json: true })));
        let cli = Cli::try_parse_from(["petportrait", "queue", "--json", "stats"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Queue { command: QueueCommand::Stats, json: true })));
        assert!(Cli::try_parse_from(["petportrait", "queue", "replay"]).is_err(), "replay needs a task");
        assert!(Cli::try_parse_from(["petportrait", "queue", "dead", "many"]).is_err(), "the limit is a number");
        assert!(Cli::try_parse_from(["petportrait", "serve"]).is_err(), "unknown commands are refused");
    }
}
