//! System tests: the real app on a random port, every scenario in embedded mode
//! (SQLite + SQLite queue + in-process S3) and distributed mode (PostgreSQL + Redis +
//! in-process S3), and again in distributed mode with Redis a three-master Redis Cluster
//! (`TEST_REDIS_CLUSTER_URL`). Test names end in `::embedded`, `::distributed` or
//! `::cluster`.

/// Declares `mod $name { embedded, distributed, cluster }` running `$scenario(Mode)`.
macro_rules! all_modes {
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$scenario(petportrait_tests::Mode::Cluster).await;
            }
        }
    };
}

mod accounts;
mod archive;
mod audit;
mod bad_input;
mod cancel;
mod checkout;
mod cog;
mod crash;
mod downloads;
mod events;
mod fairness;
mod flow;
mod gallery;
mod google;
mod hosts;
mod ledger;
mod metrics;
mod openapi;
mod operator;
mod payments;
mod privacy;
mod privacy_inventory;
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
mod web_app;
mod webhooks;
