//! SQL text for both databases. Statements are written once with `?`
//! placeholders; [`Backend::sql`] keeps them for SQLite and numbers them
//! `$1, $2, …` for PostgreSQL, which requires that. (SQLite would take `$N`
//! too, but binding named parameters costs it a linear search per parameter:
//! a 7,000-parameter multi-row insert spent 96 % of its time there.) No
//! statement of the store has a `?` inside a string literal, so the rewrite
//! is exact.

use sqlx::AssertSqlSafe;

use super::Backend;

impl Backend {
    /// The statement `text` (with `?` placeholders) in this database's form.
    pub fn sql(self, text: &str) -> AssertSqlSafe<String> {
        match self {
            Self::Sqlite => AssertSqlSafe(text.to_string()),
            Self::Postgres => numbered(text),
        }
    }

    /// The backend of a connection.
    pub fn of_connection(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// `text` with its `?` placeholders numbered `$1, $2, …`.
fn numbered(text: &str) -> AssertSqlSafe<String> {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut n = 0usize;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    AssertSqlSafe(out)
}

/// `rows` groups of `cols` placeholders: `(?, ?), (?, ?)`, for multi-row inserts.
pub fn rows(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

/// The most values one `IN (…)` list binds: the batch reads and updates
/// that name many ids go in chunks of this many (a power of two, see
/// [`in_list`]).
pub const MAX_IN_LIST: usize = 512;

/// `n` placeholders separated by commas, for `IN (…)`.
pub fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The placeholders and values of an `IN (…)` list of `items` (at most
/// [`MAX_IN_LIST`]), padded to the next power of two by repeating the last
/// value, which changes nothing in an `IN`. A statement's text then takes
/// one of ten forms whatever the batch's size, so each stays in sqlx's
/// prepared-statement cache instead of being prepared again for every new
/// count (one form per count would also crowd the cache).
pub fn in_list<T>(items: &[T]) -> (String, impl Iterator<Item = &T>) {
    let len = items.len().next_power_of_two();
    let pad = len - items.len();
    let padding = items
        .last()
        .into_iter()
        .flat_map(move |last| std::iter::repeat_n(last, pad));
    (list(len), items.iter().chain(padding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)").0,
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(numbered(&rows(2, 2)).0, "($1, $2), ($3, $4)");
        assert_eq!(Backend::Sqlite.sql("a = ?").0, "a = ?");
        assert_eq!(list(3), "?, ?, ?");
        let (marks, values) = in_list(&[1, 2, 3]);
        assert_eq!(marks, "?, ?, ?, ?");
        assert_eq!(values.copied().collect::<Vec<_>>(), [1, 2, 3, 3]);
        let (marks, values) = in_list(&[7]);
        assert_eq!((marks.as_str(), values.count()), ("?", 1));
    }
}
