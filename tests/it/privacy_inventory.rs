//! The personal-data inventory against the live schema of each backend: every table and
//! column the migrations make is registered (with its category, export and deletion),
//! and nothing registered is missing, so export and deletion stay complete as the
//! schema grows.

use std::collections::BTreeSet;

use petportrait_core::privacy::inventory::{Deletion, Owner, TABLES, table};
use petportrait_tests::{Mode, TestApp};

all_modes!(the_inventory_covers_the_live_schema, the_inventory_covers_the_live_schema);

/// Tables only one backend has: the embedded queue store lives in SQLite.
const SQLITE_ONLY: [&str; 2] = ["pp_queue_jobs", "pp_queue_idempotency"];

async fn the_inventory_covers_the_live_schema(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let live: BTreeSet<(String, String)> =
        app.services.db.schema_columns().await.expect("the schema").into_iter().collect();
    assert!(live.len() > 100, "the schema was read: {live:?}");
    let registered: BTreeSet<(String, String)> = TABLES
        .iter()
        .filter(|t| mode == Mode::Embedded || !SQLITE_ONLY.contains(&t.name))
        .flat_map(|t| t.columns.iter().map(|c| (t.name.to_owned(), c.name.to_owned())))
        .collect();
    let unregistered: Vec<_> = live.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "columns in the schema but not in core/src/privacy/inventory.rs (say what they hold, whether \
         an export carries them and what deletion does): {unregistered:?}"
    );
    let gone: Vec<_> = registered.difference(&live).collect();
    assert!(gone.is_empty(), "registered but not in the schema: {gone:?}");
    app.stop().await;
}

/// The inventory is consistent in itself: an owner column exists, a table reached
/// through another names a registered one, a table about people says what deletion does.
#[test]
fn the_inventory_is_consistent() {
    let mut names = BTreeSet::new();
    for t in TABLES {
        assert!(names.insert(t.name), "{} registered twice", t.name);
        let columns: BTreeSet<&str> = t.columns.iter().map(|c| c.name).collect();
        assert_eq!(columns.len(), t.columns.len(), "a column of {} registered twice", t.name);
        match t.owner {
            Owner::User { column } => assert!(columns.contains(column), "{}: no owner column {column}", t.name),
            Owner::Through { column, table: parent } => {
                assert!(columns.contains(column), "{}: no column {column}", t.name);
                assert!(table(parent).is_some(), "{}: {parent} is not registered", t.name);
            }
            Owner::Pseudonym { column } => {
                assert!(columns.contains(column), "{}: no pseudonym column {column}", t.name);
                assert!(matches!(t.deletion, Deletion::Pseudonymous { .. }), "{}: a pseudonymous table", t.name);
            }
            Owner::Nobody => assert_eq!(t.deletion, Deletion::NotPersonal, "{}: nobody's rows", t.name),
        }
        if t.deletion == Deletion::NotPersonal {
            assert_eq!(t.owner, Owner::Nobody, "{}: a person's rows must say what deletion does", t.name);
        }
    }
}
