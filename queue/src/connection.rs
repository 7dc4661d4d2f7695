//! Where Redis is (one server or a Redis Cluster) and the one connection type every
//! user of Redis takes, so the queue's logic and the change feed are written once.
//!
//! A cluster is named by a `redis+cluster://host:port[,host:port…]` URL, or by any
//! `redis://` URL with `cluster` set (`REDIS_CLUSTER=true`), whose server is then only
//! the first node asked for the cluster's layout. The cluster client follows `MOVED` and
//! `ASK` itself and routes each command, script or pipeline by its keys; every key of
//! one call must hash to one slot, which the queue's hash tags ensure.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};

const CLUSTER_SCHEME: &str = "redis+cluster://";

/// One Redis server or a cluster, as configured. Cheap to clone.
#[derive(Clone)]
pub enum RedisTarget {
    Server(redis::Client),
    /// The nodes asked for the cluster's layout (a client is made per connection).
    Cluster {
        nodes: Vec<ConnectionInfo>,
    },
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses only: the connection info also holds the password.
        match self {
            RedisTarget::Server(client) => f.debug_tuple("Server").field(&client.get_connection_info().addr()).finish(),
            RedisTarget::Cluster { nodes } => {
                f.debug_tuple("Cluster").field(&nodes.iter().map(ConnectionInfo::addr).collect::<Vec<_>>()).finish()
            }
        }
    }
}

impl RedisTarget {
    /// Reads a `redis://`, `rediss://` or `redis+cluster://` URL; `cluster` makes a
    /// plain URL name a cluster. A user and password before the first node apply to
    /// every node.
    pub fn parse(url: &str, cluster: bool) -> RedisResult<RedisTarget> {
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            if !cluster {
                return Ok(RedisTarget::Server(redis::Client::open(url)?));
            }
            return RedisTarget::cluster(vec![url.into_connection_info()?]);
        };
        let rest = rest.trim_end_matches('/');
        let (user_info, hosts) = match rest.rsplit_once('@') {
            Some((user_info, hosts)) => (format!("{user_info}@"), hosts),
            None => (String::new(), rest),
        };
        let nodes = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| format!("redis://{user_info}{host}").into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        if nodes.is_empty() {
            return Err(RedisError::from((redis::ErrorKind::InvalidClientConfig, "a cluster URL names no node")));
        }
        RedisTarget::cluster(nodes)
    }

    fn cluster(nodes: Vec<ConnectionInfo>) -> RedisResult<RedisTarget> {
        // Built once here only to refuse a bad configuration when it is read.
        ClusterClient::new(nodes.clone())?;
        Ok(RedisTarget::Cluster { nodes })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster { .. })
    }

    /// The servers a subscription may be held on: the one server, or every configured
    /// node of a cluster (a message published on any node reaches subscribers of every
    /// node, so any one of them serves).
    pub fn pubsub_clients(&self) -> RedisResult<Vec<redis::Client>> {
        match self {
            RedisTarget::Server(client) => Ok(vec![client.clone()]),
            RedisTarget::Cluster { nodes } => nodes.iter().cloned().map(redis::Client::open).collect(),
        }
    }

    /// A multiplexed connection that reconnects by itself; each command fails after
    /// `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<RedisConnection> {
        match self {
            RedisTarget::Server(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_max_delay(Duration::from_secs(2));
                Ok(RedisConnection::Server(client.get_connection_manager_with_config(config).await?))
            }
            RedisTarget::Cluster { nodes } => {
                let client = ClusterClient::new(nodes.clone())?;
                let config = ClusterConfig::new()
                    .set_response_timeout(response_timeout)
                    .set_connection_timeout(Duration::from_secs(5));
                Ok(RedisConnection::Cluster(client.get_async_connection_with_config(config).await?))
            }
        }
    }
}

/// A connection to one server or to a cluster; commands, scripts and pipelines run on
/// either through [`ConnectionLike`]. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub enum RedisConnection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Server(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Server(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// One server of a [`RedisConnection`]: the only one, or a cluster's master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Only,
    Master { host: String, port: u16 },
}

impl RedisConnection {
    /// The servers that hold keys: the one server, or every master of the cluster as
    /// it answers now (SCAN sees only the keys of the server it runs on).
    pub async fn masters(&mut self) -> RedisResult<Vec<Node>> {
        let RedisConnection::Cluster(conn) = self else { return Ok(vec![Node::Only]) };
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        Ok(parse_masters(&nodes))
    }

    /// Sends `cmd` to the server holding `key`'s slot: for a command that names no key
    /// but must reach that node (on a cluster it would go to a random node).
    pub async fn query_at_key<T: FromRedisValue>(&mut self, key: &str, cmd: Cmd) -> RedisResult<T> {
        match self {
            RedisConnection::Server(conn) => cmd.query_async(conn).await,
            RedisConnection::Cluster(conn) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                Ok(redis::from_redis_value(conn.route_command(cmd, routing).await?)?)
            }
        }
    }

    /// Runs `cmd` on `node`.
    pub async fn query_on<T: FromRedisValue>(&mut self, node: &Node, cmd: Cmd) -> RedisResult<T> {
        match (self, node) {
            (RedisConnection::Cluster(conn), Node::Master { host, port }) => {
                let routing = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                Ok(redis::from_redis_value(conn.route_command(cmd, RoutingInfo::SingleNode(routing)).await?)?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }

    /// Unlinks `keys`: in one command on a server; on a cluster in one command per
    /// slot (a command's keys must share one). Returns how many existed.
    pub async fn unlink(&mut self, keys: &[String]) -> RedisResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        if let RedisConnection::Server(conn) = self {
            return redis::cmd("UNLINK").arg(keys).query_async(conn).await;
        }
        let mut by_slot: std::collections::HashMap<Slot, Vec<&String>> = std::collections::HashMap::new();
        for key in keys {
            by_slot.entry(Slot::for_key(key)).or_default().push(key);
        }
        let mut removed = 0;
        for same_slot in by_slot.values() {
            removed += redis::cmd("UNLINK").arg(same_slot).query_async::<u64>(self).await?;
        }
        Ok(removed)
    }
}

/// The masters of a `CLUSTER NODES` answer (`<id> <ip:port@bus[,hostname]> <flags> …`),
/// leaving out those flagged as failing.
fn parse_masters(nodes: &str) -> Vec<Node> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master") && !flags.contains("fail");
            let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
            is_master.then(|| Some(Node::Master { host: host.to_owned(), port: port.parse().ok()? })).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_node_with_the_shared_password() {
        let target = RedisTarget::parse("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/", false).expect("parse");
        let RedisTarget::Cluster { nodes } = &target else { panic!("not a cluster: {target:?}") };
        let ports: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        assert_eq!(ports, ["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert!(nodes.iter().all(|n| n.redis_settings().password() == Some("pw")));
        assert!(!format!("{target:?}").contains("pw"));
        assert!(RedisTarget::parse("redis://127.0.0.1:7000", true).expect("flag").is_cluster());
        assert!(!RedisTarget::parse("redis://127.0.0.1:6379", false).expect("server").is_cluster());
        assert!(RedisTarget::parse("redis+cluster://", false).is_err());
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let answer = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                      b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922\n\
                      c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
                      d4 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected\n";
        assert_eq!(
            parse_masters(answer),
            [
                Node::Master { host: "127.0.0.1".into(), port: 7000 },
                Node::Master { host: "127.0.0.1".into(), port: 7001 }
            ]
        );
    }
}
