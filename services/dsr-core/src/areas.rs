//! The geographic master list: the country's administrative areas (region → district →
//! sub-county → village, or the country's own levels), with codes, names and parent links.
//!
//! Every household's location and every shock's affected areas are codes of this list, so
//! that "the households of sub-county R01.D03.S12" means the same thing to the registry, the
//! disaster authority and every program (Uganda's National Single Registry learnt that a
//! shared geographic list is a precondition, not a detail). The list is loaded from a CSV file
//! (`code,name,level,parent_code`, as `dsr generate` writes `areas.csv`) and carries a
//! version: a digest of its content, so a shock or a preview can say which list it used.

use crate::ids::AreaCode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One administrative area.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Area {
    pub code: AreaCode,
    pub name: String,
    /// The level's name (`region`, `district`, `sub_county`, `village`, …).
    pub level: String,
    /// The enclosing area; `None` for a top-level area.
    pub parent: Option<AreaCode>,
}

/// Why a master-list file cannot be used. Each names the line, so the file can be fixed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AreaListError {
    #[error("the area list is empty: it needs a header `code,name,level,parent_code` and at least one area")]
    Empty,
    #[error("line 1: the header must be `code,name,level,parent_code`, not `{0}`")]
    Header(String),
    #[error("line {line}: expected 4 comma-separated fields (code,name,level,parent_code), found {found}")]
    Fields { line: usize, found: usize },
    #[error("line {line}: `{code}` is not a well-formed area code (levels of letters, digits, `-` or `_` joined by `.`)")]
    BadCode { line: usize, code: String },
    #[error("line {line}: area `{code}` is listed twice (first on line {first})")]
    Duplicate {
        line: usize,
        code: String,
        first: usize,
    },
    #[error("line {line}: the parent `{parent}` of `{code}` is not in the list")]
    UnknownParent {
        line: usize,
        code: String,
        parent: String,
    },
    #[error("line {line}: `{code}` does not lie inside its parent `{parent}`: a code must extend its parent's code by one `.level`")]
    NotInsideParent {
        line: usize,
        code: String,
        parent: String,
    },
    #[error("line {line}: area `{code}` has no name")]
    NoName { line: usize, code: String },
}

/// The master list, in code order (depth-first: a district's villages follow it).
#[derive(Clone, Debug, PartialEq)]
pub struct AreaList {
    areas: Vec<Area>,
    index: HashMap<AreaCode, usize>,
    version: String,
}

impl AreaList {
    /// Parses a CSV master list (`code,name,level,parent_code`; an empty parent for a
    /// top-level area). Names may be quoted when they hold commas.
    pub fn from_csv(text: &str) -> Result<AreaList, AreaListError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or(AreaListError::Empty)?;
        let header_fields = split_csv(header.trim_start_matches('\u{feff}'));
        if header_fields != ["code", "name", "level", "parent_code"] {
            return Err(AreaListError::Header(header.to_string()));
        }
        let mut rows: Vec<(usize, Area)> = Vec::new();
        for (i, line) in lines {
            let line_no = i + 1;
            let fields = split_csv(line);
            if fields.len() != 4 {
                return Err(AreaListError::Fields {
                    line: line_no,
                    found: fields.len(),
                });
            }
            let code = AreaCode::new(fields[0].trim());
            if !code.is_well_formed() {
                return Err(AreaListError::BadCode {
                    line: line_no,
                    code: fields[0].clone(),
                });
            }
            if fields[1].trim().is_empty() {
                return Err(AreaListError::NoName {
                    line: line_no,
                    code: code.to_string(),
                });
            }
            let parent = match fields[3].trim() {
                "" => None,
                p => Some(AreaCode::new(p)),
            };
            rows.push((
                line_no,
                Area {
                    code,
                    name: fields[1].trim().to_string(),
                    level: fields[2].trim().to_string(),
                    parent,
                },
            ));
        }
        if rows.is_empty() {
            return Err(AreaListError::Empty);
        }
        let mut first_line: HashMap<AreaCode, usize> = HashMap::new();
        for (line, area) in &rows {
            if let Some(first) = first_line.insert(area.code.clone(), *line) {
                return Err(AreaListError::Duplicate {
                    line: *line,
                    code: area.code.to_string(),
                    first,
                });
            }
        }
        for (line, area) in &rows {
            if let Some(parent) = &area.parent {
                if !first_line.contains_key(parent) {
                    return Err(AreaListError::UnknownParent {
                        line: *line,
                        code: area.code.to_string(),
                        parent: parent.to_string(),
                    });
                }
                if area.code == *parent || !area.code.is_within(parent) {
                    return Err(AreaListError::NotInsideParent {
                        line: *line,
                        code: area.code.to_string(),
                        parent: parent.to_string(),
                    });
                }
            }
        }
        let mut areas: Vec<Area> = rows.into_iter().map(|(_, a)| a).collect();
        areas.sort_by(|a, b| a.code.as_str().cmp(b.code.as_str()));
        Ok(AreaList::from_sorted(areas))
    }

    fn from_sorted(areas: Vec<Area>) -> AreaList {
        let index = areas
            .iter()
            .enumerate()
            .map(|(i, a)| (a.code.clone(), i))
            .collect();
        // FNV-1a over the canonical rows: the same list gives the same version on every machine.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for a in &areas {
            for part in [
                a.code.as_str(),
                a.name.as_str(),
                a.level.as_str(),
                a.parent.as_ref().map_or("", |p| p.as_str()),
            ] {
                for b in part.bytes().chain(std::iter::once(0x1f)) {
                    hash ^= u64::from(b);
                    hash = hash.wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        AreaList {
            areas,
            index,
            version: format!("{hash:016x}"),
        }
    }

    /// A digest of the list's content.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every area in code order.
    pub fn all(&self) -> &[Area] {
        &self.areas
    }

    pub fn len(&self) -> usize {
        self.areas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    pub fn get(&self, code: &AreaCode) -> Option<&Area> {
        self.index.get(code).map(|&i| &self.areas[i])
    }

    /// The areas whose parent is `code` (the top-level areas for `None`), in code order.
    pub fn children(&self, code: Option<&AreaCode>) -> Vec<&Area> {
        self.areas
            .iter()
            .filter(|a| a.parent.as_ref() == code)
            .collect()
    }

    /// The codes in `codes` that are not in the list (a shock or rule naming them is wrong).
    pub fn unknown<'a>(&self, codes: impl IntoIterator<Item = &'a AreaCode>) -> Vec<AreaCode> {
        codes
            .into_iter()
            .filter(|c| !self.index.contains_key(*c))
            .cloned()
            .collect()
    }
}

/// Splits one CSV line; a field in double quotes may hold commas and `""` for a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "code,name,level,parent_code\n\
        R01,North,region,\n\
        R01.D01,\"Lake, East\",district,R01\n\
        R01.D01.S01,Alpha,sub_county,R01.D01\n\
        R01.D02,Hills,district,R01\n\
        R02,South,region,\n";

    #[test]
    fn a_list_parses_with_children_and_a_stable_version() {
        let list = AreaList::from_csv(LIST).unwrap();
        assert_eq!(list.len(), 5);
        assert_eq!(list.get(&"R01.D01".into()).unwrap().name, "Lake, East");
        let top: Vec<&str> = list
            .children(None)
            .iter()
            .map(|a| a.code.as_str())
            .collect();
        assert_eq!(top, ["R01", "R02"]);
        let r01: Vec<&str> = list
            .children(Some(&"R01".into()))
            .iter()
            .map(|a| a.code.as_str())
            .collect();
        assert_eq!(r01, ["R01.D01", "R01.D02"]);
        // Row order does not change the version; content does.
        let shuffled = "code,name,level,parent_code\nR02,South,region,\nR01.D02,Hills,district,R01\nR01,North,region,\nR01.D01.S01,Alpha,sub_county,R01.D01\nR01.D01,\"Lake, East\",district,R01\n";
        assert_eq!(
            AreaList::from_csv(shuffled).unwrap().version(),
            list.version()
        );
        let renamed = LIST.replace("Hills", "Highlands");
        assert_ne!(
            AreaList::from_csv(&renamed).unwrap().version(),
            list.version()
        );
        assert_eq!(
            list.unknown([&AreaCode::new("R01"), &AreaCode::new("R09")]),
            vec![AreaCode::new("R09")]
        );
    }

    #[test]
    fn a_broken_list_is_refused_with_the_line() {
        let cases = [
            ("", AreaListError::Empty),
            (
                "id,name\nR01,North",
                AreaListError::Header("id,name".into()),
            ),
            (
                "code,name,level,parent_code\nR01,North,region",
                AreaListError::Fields { line: 2, found: 3 },
            ),
            (
                "code,name,level,parent_code\nR01..X,North,region,",
                AreaListError::BadCode {
                    line: 2,
                    code: "R01..X".into(),
                },
            ),
            (
                "code,name,level,parent_code\nR01,North,region,\nR01,Again,region,",
                AreaListError::Duplicate {
                    line: 3,
                    code: "R01".into(),
                    first: 2,
                },
            ),
            (
                "code,name,level,parent_code\nR01.D01,Lake,district,R01",
                AreaListError::UnknownParent {
                    line: 2,
                    code: "R01.D01".into(),
                    parent: "R01".into(),
                },
            ),
            (
                "code,name,level,parent_code\nR01,North,region,\nR02.D01,Lake,district,R01",
                AreaListError::NotInsideParent {
                    line: 3,
                    code: "R02.D01".into(),
                    parent: "R01".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(AreaList::from_csv(text).unwrap_err(), expected, "{text}");
        }
    }
}
