//! What the server says about a session, asked directly (these panic on a
//! failed query: they are for set-up and assertions).

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};

/// The schemas unqualified names resolve in (`current_schemas(false)`).
pub fn current_schemas(conn: &mut PgConnection) -> Vec<String> {
    diesel::select(diesel::dsl::sql::<Array<Text>>("current_schemas(false)::text[]"))
        .get_result(conn)
        .unwrap()
}

/// The `search_path` setting, as the server spells it.
pub fn search_path(conn: &mut PgConnection) -> String {
    diesel::select(diesel::dsl::sql::<Text>("current_setting('search_path')")).get_result(conn).unwrap()
}

/// The process id of the server backend: the same one means the same
/// physical connection.
pub fn backend_pid(conn: &mut PgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()")).get_result(conn).unwrap()
}

/// The value of a `bigint` SQL expression, e.g. `(SELECT count(*) FROM pg_class)`.
pub fn scalar_i64(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(sql)).get_result(conn).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `n` of a query `SELECT count(*) AS n ...`, with `binds` bound to `$1`,
/// `$2`, ... as text.
pub fn count(conn: &mut PgConnection, sql: &str, binds: &[&str]) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for bind in binds {
        query = query.bind::<Text, _>(*bind);
    }
    query.get_result::<Count>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).n
}
