//! Key names. Every key of a queue starts with `{name}:`, the hash tag that puts them in
//! one Redis Cluster slot, and every key a script touches is passed to it in `KEYS`
//! (a script never builds a key name), so a cluster routes each call to the one node
//! that holds all of them.
//!
//! A job's data lives in four hashes keyed by its id rather than in a hash per job: a
//! fetch, a lapsed-lease reap and the retention's trim touch jobs whose ids only the
//! script learns (popped from the ready list, found in the active or dead set), so
//! their keys could not be declared in advance with a key per job. State, attempts and
//! maximum share one field (`ready 0 5`), which keeps a waiting job near the memory a
//! hash per job took (measured: 260 against 233 bytes; a field each: 417).

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `{name}:`, the start of every key (`remove_all` deletes what starts with it).
    pub prefix: String,
    /// The per-job hashes, in the order every script that touches jobs takes them
    /// first in `KEYS` (see `lua/now.lua`).
    pub jobs: [String; 4],
    pub ready: String,
    pub delayed: String,
    pub active: String,
    pub marker: String,
    pub dead: String,
    pub done: String,
    pub results: String,
}

/// Positions in [`Keys::jobs`].
pub(crate) const PAYLOAD: usize = 0;
/// `state attempt maximum` per job, e.g. `ready 0 5`.
pub(crate) const JOBS: usize = 1;
pub(crate) const ERROR: usize = 3;

impl Keys {
    pub fn new(name: &str) -> Keys {
        let prefix = format!("{{{name}}}:");
        let key = |suffix: &str| format!("{prefix}{suffix}");
        Keys {
            jobs: ["payload", "jobs", "owner", "error"].map(key),
            ready: key("ready"),
            delayed: key("delayed"),
            active: key("active"),
            marker: key("marker"),
            dead: key("dead"),
            done: key("done"),
            results: key("results"),
            prefix,
        }
    }

    /// The idempotency key `key`: a string key of its own, so that it expires by itself.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}idem:{key}", self.prefix)
    }

    /// The record of fetch `id` (the ids it leased, for a retry of it). Every fetch
    /// under no id shares the empty one, which the script never touches.
    pub fn fetch_record(&self, id: &str) -> String {
        format!("{}fetch:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let keys = Keys::new("pp:generation.v1");
        let fixed = [&keys.ready, &keys.delayed, &keys.active, &keys.marker, &keys.dead, &keys.done, &keys.results];
        for key in keys.jobs.iter().chain(fixed) {
            assert!(key.starts_with("{pp:generation.v1}:"), "{key}");
        }
        assert_eq!(keys.idempotency("k"), "{pp:generation.v1}:idem:k");
        assert_eq!(keys.fetch_record("f1"), "{pp:generation.v1}:fetch:f1");
        assert_eq!(
            redis::cluster_routing::Slot::for_key(&keys.ready),
            redis::cluster_routing::Slot::for_key(&keys.jobs[PAYLOAD])
        );
    }

    const PRELUDE: &str = include_str!("../lua/now.lua");
    const SCRIPTS: [(&str, &str); 6] = [
        ("push", include_str!("../lua/push.lua")),
        ("fetch", include_str!("../lua/fetch.lua")),
        ("settle", include_str!("../lua/settle.lua")),
        ("renew", include_str!("../lua/renew.lua")),
        ("dead", include_str!("../lua/dead.lua")),
        ("forget", include_str!("../lua/forget.lua")),
    ];

    /// The names a script binds to elements of `KEYS` (`local a, b = KEYS[1], KEYS[2]`,
    /// possibly continued on the next line).
    fn names_bound_to_keys(source: &str) -> Vec<String> {
        let joined = source.replace("=\n", "= ");
        let mut names = Vec::new();
        for line in joined.lines().map(str::trim) {
            let Some((left, right)) = line.strip_prefix("local ").and_then(|l| l.split_once(" = ")) else { continue };
            for (name, value) in left.split(',').zip(right.split(',')) {
                if value.trim().starts_with("KEYS[") {
                    names.push(name.trim().to_owned());
                }
            }
        }
        names
    }

    /// Every key a script touches is passed in KEYS: the key argument of each
    /// `redis.call` is an element of `KEYS` or a name bound to one (the prelude's
    /// `delete_jobs` loops over the job hashes), never a name built in the script.
    #[test]
    fn every_key_a_script_touches_comes_from_keys() {
        let mut bound = names_bound_to_keys(PRELUDE);
        assert!(PRELUDE.contains("for _, hash in ipairs({PAYLOAD, JOBS, OWNER, ERROR}) do"));
        bound.push("hash".to_owned());
        for (name, body) in SCRIPTS {
            let mut allowed = bound.clone();
            allowed.extend(names_bound_to_keys(body));
            let source = format!("{PRELUDE}\n{body}");
            let mut calls = source.split("redis.call('").skip(1).peekable();
            assert!(calls.peek().is_some(), "{name} calls Redis");
            for call in calls {
                let (command, rest) = call.split_once('\'').expect("a command name");
                if command == "TIME" {
                    continue;
                }
                let key = rest.trim_start_matches([',', ' ']).split([',', ')']).next().unwrap_or_default().trim();
                let declared = key.starts_with("KEYS[") && !key.contains("..");
                assert!(
                    declared || allowed.iter().any(|a| a == key),
                    "{name}.lua: {command} on {key:?}, not from KEYS"
                );
            }
        }
    }
}
