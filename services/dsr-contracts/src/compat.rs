//! May a new schema replace an old one?
//!
//! - **Backward** ([`check_backward`]): dsr with the new schema can read every event written
//!   with the old one. This is what replaying the event log needs, and what
//!   [`check_all`] demands of the current schemas against every released version.
//! - **Forward** ([`check_forward`]): consumers still on the old schema can read events
//!   written with the new one. Needed while producers upgrade before consumers.
//!
//! The verdict is apache-avro's [`SchemaCompatibility`] (Avro schema resolution rules, on
//! schemas with every named type written out in place); anything less than full compatibility
//! fails. The report then names what broke (`Member.sex`), by walking both schemas.
//!
//! Under Avro's rules a reader may drop a field (it skips it), and may add one only with a
//! default (old data lacks it). So removing `Member.sex` is backward compatible but not
//! forward compatible, and adding a field without a default is not backward compatible.

use crate::schemas::{self, SchemaError, SchemaSet};
use apache_avro::schema::{ArraySchema, MapSchema, Name, ResolvedSchema, Schema, UnionSchema};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing that makes two schemas incompatible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The field (`Member.sex`), or the type, that broke.
    pub location: String,
    /// Where in a `LifeEvent` it was found first (`LifeEvent.payload.PersonBorn.child.sex`).
    pub path: String,
    /// What is wrong and what to do.
    pub problem: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (at {})", self.location, self.problem, self.path)
    }
}

/// Which way compatibility was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema reads data written with the old one.
    Backward,
    /// The old schema reads data written with the new one.
    Forward,
}

/// Why a schema may not replace another, or why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot list released versions in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no released versions in {0}; expected directories v1, v2, ... each holding a copy of the schemas as released")]
    NoReleases(PathBuf),
    #[error("{}", describe(.direction, .old, .problems))]
    Incompatible {
        /// The old schema's label (`released v1`, or `the old schema`).
        old: String,
        direction: Direction,
        problems: Vec<Incompatibility>,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<CompatError>),
}

impl CompatError {
    /// Every incompatibility reported, across versions.
    pub fn problems(&self) -> Vec<&Incompatibility> {
        match self {
            CompatError::Incompatible { problems, .. } => problems.iter().collect(),
            CompatError::Several(errors) => errors.iter().flat_map(|e| e.problems()).collect(),
            _ => Vec::new(),
        }
    }
}

fn describe(direction: &Direction, old: &str, problems: &[Incompatibility]) -> String {
    let head = match direction {
        Direction::Backward => {
            format!("the new schema cannot read all data written with {old}; keep reading old data possible:")
        }
        Direction::Forward => format!(
            "readers on {old} cannot read all data written with the new schema; keep old readers working:"
        ),
    };
    let mut out = head;
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}

/// Checks that `new` (a `LifeEvent` schema) can read data written with `old`.
pub fn check_backward(new: &Schema, old: &Schema) -> Result<(), CompatError> {
    check(old, new).map_err(|problems| CompatError::Incompatible {
        old: "the old schema".into(),
        direction: Direction::Backward,
        problems,
    })
}

/// Checks that readers still on `old` can read data written with `new`.
pub fn check_forward(new: &Schema, old: &Schema) -> Result<(), CompatError> {
    check(new, old).map_err(|problems| CompatError::Incompatible {
        old: "the old schema".into(),
        direction: Direction::Forward,
        problems,
    })
}

/// Checks the schemas in `current_dir` backward against every released version in
/// `released_dir` (its sub-directories `v1`, `v2`, ...): the `LifeEvent`, and each of the
/// other top-level records ([`schemas::ROOTS`]: the pipeline's outputs) that the release has.
/// Returns the versions checked, oldest first; the error lists every incompatibility of every
/// version.
pub fn check_all(current_dir: &Path, released_dir: &Path) -> Result<Vec<String>, CompatError> {
    check_released(&schemas::load_dir(current_dir)?, released_dir)
}

/// [`check_all`], with the current schemas already loaded (e.g. the embedded ones,
/// [`schemas::current`]).
pub fn check_released(
    current: &SchemaSet,
    released_dir: &Path,
) -> Result<Vec<String>, CompatError> {
    let versions = released_versions(released_dir)?;
    let mut errors = Vec::new();
    for (version, dir) in &versions {
        let old = schemas::load_dir(dir)?;
        let mut problems: Vec<Incompatibility> = Vec::new();
        for root in schemas::ROOTS {
            let found = match (old.root(root), current.root(root)) {
                (Some(old), Some(new)) => check(old, new).err().unwrap_or_default(),
                (Some(_), None) => vec![Incompatibility {
                    location: root.to_string(),
                    path: root.to_string(),
                    problem: format!(
                        "{version} has the top-level record {root} and the current schemas do not; keep {root}.avsc"
                    ),
                }],
                // Not released yet: nothing to be compatible with.
                (None, _) => Vec::new(),
            };
            // A shared type (`Member`) that broke is named once, at its first path.
            for p in found {
                if !problems
                    .iter()
                    .any(|q| q.location == p.location && q.problem == p.problem)
                {
                    problems.push(p);
                }
            }
        }
        if !problems.is_empty() {
            errors.push(CompatError::Incompatible {
                old: format!("released {version}"),
                direction: Direction::Backward,
                problems,
            });
        }
    }
    match errors.len() {
        0 => Ok(versions.into_iter().map(|(v, _)| v).collect()),
        1 => Err(errors.remove(0)),
        _ => Err(CompatError::Several(errors)),
    }
}

/// The released versions in `dir`: sub-directories named `v<N>`, by N.
pub fn released_versions(dir: &Path) -> Result<Vec<(String, PathBuf)>, CompatError> {
    let io = |source| CompatError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(n) = name.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
            if path.is_dir() {
                versions.push((n, name, path));
            }
        }
    }
    if versions.is_empty() {
        return Err(CompatError::NoReleases(dir.to_path_buf()));
    }
    versions.sort();
    Ok(versions.into_iter().map(|(_, n, p)| (n, p)).collect())
}

/// `Ok` when data written with `writer` can always be read with `reader`.
fn check(writer: &Schema, reader: &Schema) -> Result<(), Vec<Incompatibility>> {
    let (writer, reader) = match (inline_all(writer), inline_all(reader)) {
        (Ok(w), Ok(r)) => (w, r),
        (Err(e), _) | (_, Err(e)) => {
            return Err(vec![Incompatibility {
                location: "LifeEvent".into(),
                path: "LifeEvent".into(),
                problem: format!("the schema refers to a type it does not define ({e}); load it with schemas::load_dir"),
            }])
        }
    };
    let verdict = SchemaCompatibility::can_read(&writer, &reader);
    if verdict == Ok(Compatibility::Full) {
        return Ok(());
    }
    let mut problems = Vec::new();
    let root = reader
        .name()
        .map(|n| n.name().to_string())
        .unwrap_or_else(|| "LifeEvent".into());
    diagnose(&writer, &reader, &root, &root, &mut problems);
    if problems.is_empty() {
        problems.push(Incompatibility {
            location: root.clone(),
            path: root,
            problem: match verdict {
                Err(e) => e.to_string(),
                Ok(_) => "only partly compatible: some data written with the writer's schema cannot be read".into(),
            },
        });
    }
    let mut seen = Vec::<(String, String)>::new();
    problems.retain(|p| {
        let key = (p.location.clone(), p.problem.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    Err(problems)
}

/// The schema with every reference to a named type replaced by the type itself, so that
/// [`SchemaCompatibility`] (which compares references by name only) sees every field.
pub fn inline_all(schema: &Schema) -> Result<Schema, apache_avro::Error> {
    let resolved = ResolvedSchema::try_from(schema)?;
    let names: HashMap<Name, Schema> = resolved
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect();
    Ok(inline(schema, &names, 0))
}

fn inline(schema: &Schema, names: &HashMap<Name, Schema>, depth: usize) -> Schema {
    // dsr's types are not recursive; a recursive one stays a reference below this depth.
    if depth > 32 {
        return schema.clone();
    }
    match schema {
        Schema::Ref { name } => match names.get(name) {
            Some(s) => inline(s, names, depth + 1),
            None => schema.clone(),
        },
        Schema::Record(r) => {
            let mut r = r.clone();
            for f in &mut r.fields {
                f.schema = inline(&f.schema, names, depth + 1);
            }
            Schema::Record(r)
        }
        Schema::Array(a) => Schema::Array(ArraySchema {
            items: Box::new(inline(&a.items, names, depth + 1)),
            attributes: a.attributes.clone(),
        }),
        Schema::Map(m) => Schema::Map(MapSchema {
            types: Box::new(inline(&m.types, names, depth + 1)),
            attributes: m.attributes.clone(),
        }),
        Schema::Union(u) => {
            let variants = u
                .variants()
                .iter()
                .map(|v| inline(v, names, depth + 1))
                .collect();
            UnionSchema::new(variants)
                .map(Schema::Union)
                .unwrap_or_else(|_| schema.clone())
        }
        other => other.clone(),
    }
}

/// Walks `writer` and `reader` side by side and records what `reader` cannot read. `loc` is
/// the innermost `Record.field`, `path` the full path.
fn diagnose(
    writer: &Schema,
    reader: &Schema,
    loc: &str,
    path: &str,
    out: &mut Vec<Incompatibility>,
) {
    let mut push = |problem: String| {
        out.push(Incompatibility {
            location: loc.to_string(),
            path: path.to_string(),
            problem,
        })
    };
    match (writer, reader) {
        (Schema::Record(w), Schema::Record(r)) => {
            if w.name.name() != r.name.name() {
                push(format!(
                    "record {} was renamed {}; keep the name (or add the old one to \"aliases\")",
                    w.name.name(),
                    r.name.name()
                ));
                return;
            }
            for rf in &r.fields {
                let loc = format!("{}.{}", r.name.name(), rf.name);
                let path = format!("{path}.{}", rf.name);
                let wf = std::iter::once(&rf.name)
                    .chain(&rf.aliases)
                    .find_map(|n| w.fields.iter().find(|wf| &wf.name == n));
                match wf {
                    Some(wf) => diagnose(&wf.schema, &rf.schema, &loc, &path, out),
                    None if rf.default.is_none() => out.push(Incompatibility {
                        location: loc,
                        path,
                        problem: format!(
                            "field `{}` is not in the writer's {} and has no default, so it cannot be filled in; give it a \"default\" (null for an optional field) or keep the field in the writer",
                            rf.name,
                            r.name.name()
                        ),
                    }),
                    None => {}
                }
            }
        }
        (Schema::Union(w), Schema::Union(r)) => {
            for wb in w.variants() {
                union_branch(wb, w, r, loc, path, out);
            }
        }
        (Schema::Union(w), _) => {
            for wb in w.variants() {
                diagnose(wb, reader, loc, path, out);
            }
        }
        (_, Schema::Union(r)) => {
            let single = UnionSchema::new(vec![writer.clone()]);
            match single {
                Ok(w) => union_branch(writer, &w, r, loc, path, out),
                Err(_) => push(format!("no branch of the reader's union can read {}", kind(writer))),
            }
        }
        (Schema::Enum(w), Schema::Enum(r)) => {
            if w.name.name() != r.name.name() {
                push(format!(
                    "code list {} was renamed {}; keep the name (or add the old one to \"aliases\")",
                    w.name.name(),
                    r.name.name()
                ));
                return;
            }
            let lost: Vec<&str> = w
                .symbols
                .iter()
                .filter(|s| !r.symbols.contains(s))
                .map(|s| s.as_str())
                .collect();
            if !lost.is_empty() && r.default.is_none() {
                push(format!(
                    "code list {} lacks symbol(s) {} that data written with the writer's schema may hold; keep them (add symbols only at the end)",
                    r.name.name(),
                    lost.join(", ")
                ));
            }
        }
        (Schema::Array(w), Schema::Array(r)) => {
            diagnose(&w.items, &r.items, loc, &format!("{path}[]"), out)
        }
        (Schema::Map(w), Schema::Map(r)) => {
            diagnose(&w.types, &r.types, loc, &format!("{path}{{}}"), out)
        }
        _ => match SchemaCompatibility::can_read(writer, reader) {
            Ok(Compatibility::Full) => {}
            Ok(Compatibility::Partial) => push(format!(
                "{} can be read as {} only for some values",
                kind(writer),
                kind(reader)
            )),
            Err(_) => push(format!(
                "the type changed from {} to {}, which Avro cannot convert; keep the type (int may widen to long, float or double)",
                kind(writer),
                kind(reader)
            )),
        },
    }
}

/// Finds the reader's branch for one writer branch of a union and compares them.
fn union_branch(
    wb: &Schema,
    w: &UnionSchema,
    r: &UnionSchema,
    loc: &str,
    path: &str,
    out: &mut Vec<Incompatibility>,
) {
    let found = match wb.name() {
        Some(name) => r
            .variants()
            .iter()
            .find(|rb| rb.name().is_some_and(|n| n.name() == name.name())),
        None => r
            .variants()
            .iter()
            .find(|rb| SchemaCompatibility::can_read(wb, rb) == Ok(Compatibility::Full))
            .or_else(|| {
                r.variants()
                    .iter()
                    .find(|rb| SchemaCompatibility::can_read(wb, rb).is_ok())
            }),
    };
    let non_null = w
        .variants()
        .iter()
        .filter(|v| !matches!(v, Schema::Null))
        .count();
    let path = match wb.name() {
        Some(n) if non_null > 1 => format!("{path}.{}", n.name()),
        _ => path.to_string(),
    };
    match found {
        Some(rb) => diagnose(wb, rb, loc, &path, out),
        None => out.push(Incompatibility {
            location: loc.to_string(),
            path,
            problem: format!(
                "the reader's union has no branch for {}, which the writer may send; keep the branch",
                kind(wb)
            ),
        }),
    }
}

fn kind(schema: &Schema) -> String {
    match schema.name() {
        Some(n) => n.name().to_string(),
        None => format!("{:?}", apache_avro::schema::SchemaKind::from(schema)).to_lowercase(),
    }
}
