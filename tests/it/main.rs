//! System tests: the real app on a random port, every scenario in embedded mode
//! (SQLite + SQLite queue + in-process S3) and distributed mode (PostgreSQL + Redis +
//! in-process S3). Test names end in `::embedded` or `::distributed`.

/// Declares `mod $name { embedded, distributed }` running `$scenario(Mode)`.
macro_rules! both_modes {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(petportrait_tests::Mode::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                super::$scenario(petportrait_tests::Mode::Distributed).await;
            }
        }
    };
}

mod accounts;
mod bad_input;
mod cancel;
mod checkout;
mod cog;
mod crash;
mod downloads;
mod events;
mod flow;
mod gallery;
mod google;
mod hosts;
mod ledger;
mod metrics;
mod openapi;
mod operator;
mod payments;
mod profile;
mod rate_limits;
mod remote;
mod remote_recovery;
mod request_ids;
mod retention;
mod retries;
mod sessions;
mod slow_clients;
mod studio;
mod sweep;
mod webhooks;
