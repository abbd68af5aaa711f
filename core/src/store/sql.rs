//! SQL text that both databases accept. Statements are written with `?`
//! placeholders; [`sql`] numbers them `$1, $2, …`, which PostgreSQL requires
//! and SQLite accepts. No statement of the store has a `?` inside a string
//! literal, so the rewrite is exact.

use sqlx::AssertSqlSafe;

/// `text` with its `?` placeholders numbered, ready for `sqlx::query`.
pub fn sql(text: &str) -> AssertSqlSafe<String> {
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

/// `n` placeholders separated by commas, for `IN (…)`.
pub fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        assert_eq!(
            sql("SELECT a FROM t WHERE b = ? AND c IN (?, ?)").0,
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(sql(&rows(2, 2)).0, "($1, $2), ($3, $4)");
        assert_eq!(list(3), "?, ?, ?");
    }
}
