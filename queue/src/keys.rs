//! Key names. Every key of a queue starts with `{name}:`, the hash tag that puts them in
//! one Redis Cluster slot, which the scripts need (they touch several keys at once).

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `{name}:` — the scripts build per-job keys (`{name}:job:<id>`) from it.
    pub prefix: String,
    pub ready: String,
    pub delayed: String,
    pub active: String,
    pub marker: String,
    pub dead: String,
    pub done: String,
}

impl Keys {
    pub fn new(name: &str) -> Keys {
        let prefix = format!("{{{name}}}:");
        Keys {
            ready: format!("{prefix}ready"),
            delayed: format!("{prefix}delayed"),
            active: format!("{prefix}active"),
            marker: format!("{prefix}marker"),
            dead: format!("{prefix}dead"),
            done: format!("{prefix}done"),
            prefix,
        }
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let keys = Keys::new("pp:generation.v1");
        for key in [&keys.ready, &keys.delayed, &keys.active, &keys.marker, &keys.dead, &keys.done] {
            assert!(key.starts_with("{pp:generation.v1}:"), "{key}");
        }
        assert_eq!(keys.job("01J"), "{pp:generation.v1}:job:01J");
    }
}
