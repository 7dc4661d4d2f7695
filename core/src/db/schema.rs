//! The live schema as the database reports it: every table and column, for the test
//! that holds the personal-data inventory (`privacy/inventory.rs`) to it.

use super::{Db, DbResult, Dialect};

impl Db {
    /// `(table, column)` of every table of this database, sorted.
    pub async fn schema_columns(&self) -> DbResult<Vec<(String, String)>> {
        // Dialect: each backend describes its own schema.
        let query = match self.dialect {
            Dialect::Postgres => {
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() ORDER BY 1, 2"
            }
            Dialect::Sqlite => {
                "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
            }
        };
        Ok(sqlx::query_as(query).fetch_all(&self.pool).await?)
    }
}
