//! The `-X importtime` parser: rows of CPython 3.7 to 3.14, the `cached` rows of 3.14's
//! `-X importtime=2`, and the import tree they describe (`spec/IMPORTTIME.md` §2).

use serde::Serialize;

/// The prefix of every row and of the header.
const PREFIX: &str = "import time:";

/// One row of `-X importtime`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The module's absolute name.
    pub name: String,
    /// Its depth: 0 for an import made by the program itself.
    pub level: usize,
    /// Self time, microseconds (0 for a cached row).
    pub self_us: u64,
    /// Cumulative time, microseconds (0 for a cached row).
    pub cum_us: u64,
    /// A 3.14 `-X importtime=2` row: the module was already imported.
    pub cached: bool,
}

/// A node of the import tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tree {
    pub row: Row,
    /// The imports completed while this one ran, in order.
    pub children: Vec<Tree>,
}

/// What one process wrote on stderr: the rows, and every other line (the program's own
/// stderr), in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub rows: Vec<Row>,
    pub other: Vec<String>,
    /// Whether the header was seen (a process that imported nothing prints none).
    pub header: bool,
}

/// Splits a process's stderr into `-X importtime` rows and its own lines.
///
/// A line that starts with `import time:` but is not a well-formed row (a program can print
/// anything) counts as the program's own.
pub fn parse(stderr: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut pending_cached: Vec<(usize, String, Option<usize>)> = Vec::new();
    let mut previous: Option<usize> = None;
    for line in stderr.lines() {
        match parse_line(line) {
            Some(Line::Header) => parsed.header = true,
            Some(Line::Timed(row)) => {
                // A cached row whose padding left its level open (spec/IMPORTTIME.md §2):
                // if the next timed row closes a group the previous one belongs to, the
                // import happened in that group (the previous row's level); else it is a
                // sibling of the next row. Never deeper than the padding allows.
                let guess = match previous {
                    Some(p) if row.level < p => p,
                    _ => row.level,
                };
                previous = Some(row.level);
                for (index, name, level) in pending_cached.drain(..) {
                    let bound = name.len() / 2;
                    parsed.rows.insert(
                        index,
                        Row {
                            name,
                            level: level.unwrap_or(guess.min(bound)),
                            self_us: 0,
                            cum_us: 0,
                            cached: true,
                        },
                    );
                }
                parsed.rows.push(row);
            }
            Some(Line::Cached { name, level }) => {
                let index = parsed.rows.len() + pending_cached.len();
                pending_cached.push((index, name, level));
            }
            None => parsed.other.push(line.to_owned()),
        }
    }
    // Cached rows after the last timed row: imports of the program itself (level 0).
    for (index, name, level) in pending_cached {
        parsed.rows.insert(
            index,
            Row {
                name,
                level: level.unwrap_or(0),
                self_us: 0,
                cum_us: 0,
                cached: true,
            },
        );
    }
    parsed
}

enum Line {
    Header,
    Timed(Row),
    Cached { name: String, level: Option<usize> },
}

fn parse_line(line: &str) -> Option<Line> {
    let rest = line.strip_prefix(PREFIX)?;
    let mut fields = rest.splitn(3, '|');
    let first = fields.next()?;
    let second = fields.next()?;
    // The name field: one space after the bar, then the indentation and the name.
    let third = fields.next()?.strip_prefix(' ')?;
    if first.trim() == "self [us]" && second.trim() == "cumulative" {
        return (third.trim() == "imported package").then_some(Line::Header);
    }
    let name = third.trim_start_matches(' ');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let pad = third.len() - name.len();
    if first.trim() == "cached" && second.trim() == "cached" {
        // `%*s` with width level*2 right-aligns the name (3.14 Python/import.c,
        // import_ensure_initialized): padding fixes the level only if there is some.
        let level = (pad > 0).then(|| (pad + name.len()) / 2);
        return Some(Line::Cached {
            name: name.to_owned(),
            level,
        });
    }
    // `%*s%s` with width level*2 and "" (Python/import.c, import_find_and_load, 3.7-3.14).
    if pad % 2 != 0 {
        return None;
    }
    let self_us = first.trim().parse().ok()?;
    let cum_us = second.trim().parse().ok()?;
    Some(Line::Timed(Row {
        name: name.to_owned(),
        level: pad / 2,
        self_us,
        cum_us,
        cached: false,
    }))
}

/// The import forest of a run: children are printed before their parent, so a row of level
/// L adopts the rows of level L+1 printed since the previous row of level <= L.
///
/// Rows left over at a deeper level (output cut short by a crash) become roots.
pub fn tree(rows: &[Row]) -> Vec<Tree> {
    let mut stack: Vec<Tree> = Vec::new();
    for row in rows {
        let mut children = Vec::new();
        if !row.cached {
            while stack.last().is_some_and(|t| t.row.level > row.level) {
                children.push(stack.pop().expect("checked non-empty"));
            }
            children.reverse();
        }
        stack.push(Tree {
            row: row.clone(),
            children,
        });
    }
    stack
}

impl Tree {
    /// Every node of the subtree, depth first (parents before children).
    pub fn walk(&self, f: &mut impl FnMut(&Tree)) {
        f(self);
        for child in &self.children {
            child.walk(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_levels() {
        let p = parse(
            "import time: self [us] | cumulative | imported package\n\
             import time:       391 |        391 |   _io\n\
             import time:      1150 |       1541 | _frozen\n\
             Traceback: something else\n",
        );
        assert!(p.header);
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].level, 1);
        assert_eq!(p.rows[1].level, 0);
        assert_eq!(p.rows[1].cum_us, 1541);
        assert_eq!(p.other, vec!["Traceback: something else".to_owned()]);
        let t = tree(&p.rows);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].children[0].row.name, "_io");
    }

    #[test]
    fn malformed_rows_are_the_programs_own() {
        for line in [
            "import time: truncated output",
            "import time:  120 |  120",
            "import time:  x |  120 | mod",
            "import time:  1 |  2 |  odd",
            "import time:  1 |  2 | two words",
        ] {
            let p = parse(line);
            assert!(p.rows.is_empty(), "{line}");
            assert_eq!(p.other.len(), 1);
        }
    }
}
