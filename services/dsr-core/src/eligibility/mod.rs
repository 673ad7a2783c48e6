//! Programs and eligibility: who qualifies, for how much, and what changed.
//!
//! A program is data (`programs/*.yaml`): its rule and benefit formula are CEL expressions
//! over the household (see [`rule`]), compiled and checked when the program is loaded.
//! [`Program::decide`] evaluates a household against the rule and compares with the status
//! the household had, giving entered / changed / exited / unchanged and the inputs that changed.

pub mod rule;

use crate::facts::Facts;
use crate::household::{Household, ProgramStatus};
use crate::ids::*;
use compact_str::{format_compact, CompactString};
pub use rule::{Compiled, EvalError, HouseholdField, Input, MemberField, RuleError, Type, Value};
use serde::{Deserialize, Serialize};

/// A status's rule inputs: their names, shared with the program that read them, and their
/// values, inline up to four (the shipped programs read two to four).
///
/// Why this shape: a household's program statuses are read and written on every event, and
/// keeping each input's name next to its value made a status 240 bytes (three programs: a
/// third of the memory the domain core touches per event). The names are the program's, the
/// same for every household, so a status holds one pointer to the program's list and
/// [`Program::refresh_inputs`] compares that pointer, not the names. A record decoded from
/// storage brings its own list; the first refresh swaps it for the program's when the names
/// are equal. On the wire and in storage the inputs stay a list of `{name, value}`.
#[derive(Clone, Debug, Default)]
pub struct RuleInputs {
    names: InputNames,
    values: smallvec::SmallVec<[Scalar; 4]>,
}

/// The names of a rule's inputs, in the order of their values.
pub type InputNames = std::sync::Arc<[CompactString]>;

impl RuleInputs {
    /// Inputs from their names and values (as many values as names).
    pub fn new(names: InputNames, values: impl IntoIterator<Item = Scalar>) -> RuleInputs {
        let values: smallvec::SmallVec<[Scalar; 4]> = values.into_iter().collect();
        assert_eq!(names.len(), values.len(), "one value per input name");
        RuleInputs { names, values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Each input's name and value, in the rule's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Scalar)> + '_ {
        self.names
            .iter()
            .map(|n| n.as_str())
            .zip(self.values.iter())
    }

    /// The value of the input with this name.
    pub fn get(&self, name: &str) -> Option<&Scalar> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Sets the value of the `index`th input.
    pub fn set_value(&mut self, index: usize, value: Scalar) {
        self.values[index] = value;
    }

    /// Owned name/value pairs (for encoders and callers outside the hot path).
    pub fn to_vec(&self) -> Vec<InputValue> {
        self.iter()
            .map(|(name, value)| InputValue {
                name: name.into(),
                value: value.clone(),
            })
            .collect()
    }
}

impl PartialEq for RuleInputs {
    fn eq(&self, other: &RuleInputs) -> bool {
        self.values == other.values
            && (std::sync::Arc::ptr_eq(&self.names, &other.names) || self.names == other.names)
    }
}

impl FromIterator<InputValue> for RuleInputs {
    fn from_iter<I: IntoIterator<Item = InputValue>>(pairs: I) -> RuleInputs {
        let (names, values): (Vec<CompactString>, smallvec::SmallVec<[Scalar; 4]>) =
            pairs.into_iter().map(|i| (i.name, i.value)).unzip();
        RuleInputs {
            names: names.into(),
            values,
        }
    }
}

impl From<Vec<InputValue>> for RuleInputs {
    fn from(pairs: Vec<InputValue>) -> RuleInputs {
        pairs.into_iter().collect()
    }
}

impl Serialize for RuleInputs {
    /// As a list of `{name, value}`: the format `Vec<InputValue>` has, so stored records and
    /// JSON answers do not depend on the in-memory shape.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename = "InputValue")]
        struct Pair<'a> {
            name: &'a str,
            value: &'a Scalar,
        }
        serializer.collect_seq(self.iter().map(|(name, value)| Pair { name, value }))
    }
}

impl<'de> Deserialize<'de> for RuleInputs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RuleInputs, D::Error> {
        Ok(Vec::<InputValue>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// One input of a rule as it was at evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputValue {
    pub name: CompactString,
    pub value: Scalar,
}

/// A rule input's value. Member fields are kept as one digest over all members (compared, not
/// shown: they can be personal data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(CompactString),
    Digest(u64),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Number(n) => write!(f, "{n:.2}"),
            Scalar::Text(t) => write!(f, "{t}"),
            Scalar::Digest(_) => f.write_str("(changed)"),
        }
    }
}

/// A program definition file as written (YAML).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramFile {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// What the data is used for; every read of personal data is bound to it.
    pub purpose: String,
    pub data_sharing_agreement: String,
    pub rule_version: u32,
    /// CEL, must be a bool.
    pub rule: String,
    /// CEL, must be a number: the monthly benefit for an eligible household.
    pub benefit: String,
    /// Fields the program may receive (purpose limitation): household field names, and
    /// `members.<field>` for member fields; `members.given_name` / `members.family_name` too.
    pub fields_allowed: Vec<String>,
    /// Only households in this area (code path prefix) can be eligible.
    #[serde(default)]
    pub area_scope: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Life events about its current beneficiaries the program is told of (event type names)
    /// [default: PersonDied, PersonBorn, PersonMoved, DisabilityAssessed].
    #[serde(default)]
    pub notify_life_events: Option<Vec<String>>,
}

/// The life events a program is told of about its beneficiaries unless its file says otherwise.
pub const DEFAULT_LIFE_EVENTS: &[&str] = &[
    "PersonDied",
    "PersonBorn",
    "PersonMoved",
    "DisabilityAssessed",
];

/// A program, compiled and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub id: CompactString,
    pub name: String,
    pub owner: String,
    pub purpose: String,
    pub data_sharing_agreement: String,
    pub rule_version: u32,
    pub rule: Compiled,
    pub benefit: Compiled,
    pub fields_allowed: Vec<String>,
    pub area_scope: Option<AreaCode>,
    pub description: Option<String>,
    /// Event types a current beneficiary's household is notified of (sorted).
    pub life_events: Vec<CompactString>,
    /// What rule and benefit read, worked out once at load: household fields, member fields,
    /// and the name under which the member fields' digest is recorded.
    inputs: Inputs,
}

#[derive(Clone, Debug, PartialEq)]
struct Inputs {
    household: Vec<HouseholdField>,
    members: Vec<MemberField>,
    members_name: CompactString,
    /// Household field names, then `members_name` when members are read: the list every
    /// status of this program shares.
    names: InputNames,
}

impl Inputs {
    fn of(rule: &Compiled, benefit: &Compiled) -> Inputs {
        let mut household: Vec<HouseholdField> = rule
            .household_fields
            .iter()
            .chain(&benefit.household_fields)
            .copied()
            .filter(|f| *f != HouseholdField::Members)
            .collect();
        household.sort();
        household.dedup();
        let mut members: Vec<MemberField> = rule
            .member_fields
            .iter()
            .chain(&benefit.member_fields)
            .copied()
            .collect();
        members.sort();
        members.dedup();
        let members_name = format_compact!(
            "members.{}",
            members
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(",")
        );
        let names: Vec<CompactString> = household
            .iter()
            .map(|f| CompactString::from(f.name()))
            .chain((!members.is_empty()).then(|| members_name.clone()))
            .collect();
        Inputs {
            household,
            members,
            members_name,
            names: names.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("program file is not valid YAML or has an unexpected key: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    #[error("program `{program}`: {source}")]
    Rule {
        program: String,
        #[source]
        source: RuleError,
    },
    #[error("program `{program}`: fields_allowed names unknown field `{field}`; allowed are household fields ({household}) and members.<field> ({members}, given_name, family_name)")]
    UnknownAllowedField {
        program: String,
        field: String,
        household: String,
        members: String,
    },
    #[error("program `{program}`: `{field}` must not be empty")]
    Empty {
        program: String,
        field: &'static str,
    },
    #[error("program `{program}`: area_scope `{area}` is not an area code path like R01.D03")]
    BadArea { program: String, area: String },
    #[error("program `{program}`: notify_life_events names `{event_type}`, which is not an event type; known are {known}")]
    UnknownLifeEvent {
        program: String,
        event_type: String,
        known: String,
    },
    #[error("program id `{0}` must be lowercase letters, digits and '-' (it names Kafka topics and URLs)")]
    BadId(String),
}

impl Program {
    pub fn from_yaml(text: &str) -> Result<Program, ProgramError> {
        Program::from_file(serde_yaml_ng::from_str(text)?)
    }

    pub fn from_file(f: ProgramFile) -> Result<Program, ProgramError> {
        if f.id.is_empty()
            || !f
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ProgramError::BadId(f.id));
        }
        for (field, v) in [
            ("name", &f.name),
            ("purpose", &f.purpose),
            ("data_sharing_agreement", &f.data_sharing_agreement),
        ] {
            if v.trim().is_empty() {
                return Err(ProgramError::Empty {
                    program: f.id.clone(),
                    field,
                });
            }
        }
        let wrap = |source| ProgramError::Rule {
            program: f.id.clone(),
            source,
        };
        let rule = rule::compile("rule", &f.rule, Type::Bool).map_err(wrap)?;
        let benefit = rule::compile("benefit", &f.benefit, Type::Double).map_err(wrap)?;
        for field in &f.fields_allowed {
            let known = match field.strip_prefix("members.") {
                Some(m) => {
                    MemberField::from_name(m).is_some() || m == "given_name" || m == "family_name"
                }
                None => HouseholdField::from_name(field).is_some(),
            };
            if !known {
                return Err(ProgramError::UnknownAllowedField {
                    program: f.id.clone(),
                    field: field.clone(),
                    household: names(HouseholdField::ALL.iter().map(|f| f.name())),
                    members: names(MemberField::ALL.iter().map(|f| f.name())),
                });
            }
        }
        let area_scope = match f.area_scope {
            Some(a) => {
                let code = AreaCode::new(&a);
                if !code.is_well_formed() {
                    return Err(ProgramError::BadArea {
                        program: f.id.clone(),
                        area: a,
                    });
                }
                Some(code)
            }
            None => None,
        };
        let mut life_events: Vec<CompactString> = match &f.notify_life_events {
            Some(list) => list.iter().map(|t| t.as_str().into()).collect(),
            None => DEFAULT_LIFE_EVENTS.iter().map(|t| (*t).into()).collect(),
        };
        if let Some(bad) = life_events
            .iter()
            .find(|t| !crate::event::EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(ProgramError::UnknownLifeEvent {
                program: f.id.clone(),
                event_type: bad.to_string(),
                known: names(crate::event::EVENT_TYPES.iter().copied()),
            });
        }
        life_events.sort();
        life_events.dedup();
        let inputs = Inputs::of(&rule, &benefit);
        Ok(Program {
            life_events,
            inputs,
            id: f.id.as_str().into(),
            name: f.name,
            owner: f.owner,
            purpose: f.purpose,
            data_sharing_agreement: f.data_sharing_agreement,
            rule_version: f.rule_version,
            rule,
            benefit,
            fields_allowed: f.fields_allowed,
            area_scope,
            description: f.description,
        })
    }

    /// The program as a file again (what a new rule version starts from).
    pub fn to_file(&self) -> ProgramFile {
        ProgramFile {
            id: self.id.to_string(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            purpose: self.purpose.clone(),
            data_sharing_agreement: self.data_sharing_agreement.clone(),
            rule_version: self.rule_version,
            rule: self.rule.source.clone(),
            benefit: self.benefit.source.clone(),
            fields_allowed: self.fields_allowed.clone(),
            area_scope: self.area_scope.as_ref().map(|a| a.to_string()),
            description: self.description.clone(),
            notify_life_events: Some(self.life_events.iter().map(|t| t.to_string()).collect()),
        }
    }

    /// Eligible or not, and the benefit (0 when not eligible).
    pub fn verdict(&self, input: &Input) -> Result<(bool, f64), EvalError> {
        let in_scope = self
            .area_scope
            .as_ref()
            .is_none_or(|a| input.household.area.is_within(a));
        let eligible = in_scope
            && !input.household.dissolved
            && matches!(self.rule.eval(input)?, Value::Bool(true));
        let benefit = if eligible {
            match self.benefit.eval(input)? {
                Value::Double(d) if d.is_finite() => d.max(0.0),
                Value::Int(i) => (i as f64).max(0.0),
                _ => 0.0,
            }
        } else {
            0.0
        };
        Ok((eligible, benefit))
    }

    /// Evaluates the rule and the benefit for a household.
    pub fn evaluate(&self, input: &Input) -> Result<Evaluation, EvalError> {
        let (eligible, benefit) = self.verdict(input)?;
        let mut values = Vec::new();
        self.input_values_into(input, &mut values);
        let inputs = self.named_inputs(values);
        Ok(Evaluation {
            eligible,
            benefit,
            inputs,
        })
    }

    /// The names of the rule's inputs (household fields the rule and benefit read, then one
    /// digest of the member fields they read), in the order [`Program::input_values_into`]
    /// gives their values.
    pub fn input_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inputs.names.iter().map(|n| n.as_str())
    }

    /// Values with their names.
    pub fn named_inputs(&self, values: impl IntoIterator<Item = Scalar>) -> RuleInputs {
        RuleInputs::new(self.inputs.names.clone(), values)
    }

    /// The values of the rule's inputs as they are now, without their names, in the order of
    /// [`Program::input_names`].
    pub fn input_values_into(&self, input: &Input, out: &mut Vec<Scalar>) {
        for f in &self.inputs.household {
            out.push(scalar(rule::read_household_field(*f, input)));
        }
        if !self.inputs.members.is_empty() {
            out.push(Scalar::Digest(self.members_digest(input)));
        }
    }

    /// One digest over every member's id and the member fields the rule reads.
    fn members_digest(&self, input: &Input) -> u64 {
        let mut hash = Digest::new();
        let ages = input.facts.ages.iter().copied();
        for (m, age) in input.household.members.iter().zip(ages) {
            hash.write(m.person_id.as_str().as_bytes());
            for f in &self.inputs.members {
                match rule::read_member_field(*f, m, age) {
                    Value::Bool(b) => hash.word(b as u64),
                    Value::Int(i) => hash.word(i as u64),
                    Value::Double(d) => hash.word(d.to_bits()),
                    Value::Str(s) => hash.write(s.as_bytes()),
                }
            }
        }
        hash.0
    }

    /// Brings `inputs` (a status's inputs) up to date with the household, in place when they
    /// are this rule's inputs already (same names, same order), else by replacing them.
    ///
    /// This runs for every program on every event, and most inputs have not changed: each
    /// value is compared as it is read, and only a changed one is converted and written, so
    /// the usual case builds no names, copies no text and allocates nothing.
    pub fn refresh_inputs(&self, input: &Input, inputs: &mut RuleInputs) {
        let wanted = &self.inputs;
        if !std::sync::Arc::ptr_eq(&inputs.names, &wanted.names) {
            if inputs.names == wanted.names {
                // Decoded from storage: the same names, in a list of its own.
                inputs.names = wanted.names.clone();
            } else {
                let mut values = Vec::with_capacity(wanted.names.len());
                self.input_values_into(input, &mut values);
                *inputs = self.named_inputs(values);
                return;
            }
        }
        let values = &mut inputs.values;
        for (slot, f) in values.iter_mut().zip(&wanted.household) {
            let now = rule::read_household_field(*f, input);
            if !holds(slot, now) {
                *slot = scalar(now);
            }
        }
        if !wanted.members.is_empty() {
            let now = Scalar::Digest(self.members_digest(input));
            let slot = &mut values[wanted.household.len()];
            if *slot != now {
                *slot = now;
            }
        }
    }

    /// Evaluates and compares with the household's previous status for this program.
    pub fn decide(
        &self,
        previous: Option<&ProgramStatus>,
        input: &Input,
    ) -> Result<Decision, EvalError> {
        let now = self.evaluate(input)?;
        Ok(decide(previous, now, self))
    }
}

/// What a rule says about a household now.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub eligible: bool,
    pub benefit: f64,
    pub inputs: RuleInputs,
}

/// Entered / changed / exited / unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Entered,
    Changed,
    Exited,
    Unchanged,
}

impl ChangeKind {
    /// What the change is, from eligibility and benefit before and after. The one definition
    /// `decide` uses and tests compare against.
    pub fn between(before: Option<(bool, f64)>, after: (bool, f64)) -> ChangeKind {
        match (before, after) {
            (Some((true, b0)), (true, b1)) if b0 != b1 => ChangeKind::Changed,
            (Some((true, _)), (true, _)) => ChangeKind::Unchanged,
            (Some((true, _)), (false, _)) => ChangeKind::Exited,
            (_, (true, _)) => ChangeKind::Entered,
            (_, (false, _)) => ChangeKind::Unchanged,
        }
    }
}

/// The outcome of comparing a household with its previous status for one program.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub kind: ChangeKind,
    /// Why: the inputs that changed, as `name: before → after`.
    pub reasons: Vec<String>,
    /// The status to store on the household.
    pub status: ProgramStatus,
}

/// `diff(previous_status, evaluation)`.
pub fn decide(previous: Option<&ProgramStatus>, now: Evaluation, program: &Program) -> Decision {
    let kind = ChangeKind::between(
        previous.map(|p| (p.eligible, p.benefit)),
        (now.eligible, now.benefit),
    );
    let reasons = if kind == ChangeKind::Unchanged {
        Vec::new()
    } else {
        change_reasons(previous, &now.inputs, now.benefit, program)
    };
    Decision {
        kind,
        reasons,
        status: ProgramStatus {
            program_id: program.id.clone(),
            rule_version: program.rule_version,
            eligible: now.eligible,
            benefit: now.benefit,
            inputs: now.inputs,
        },
    }
}

/// Why a household's status changed: the inputs that differ from the previous status, as
/// `name: before → after` (member inputs only as "changed": they can be personal data).
pub fn change_reasons(
    previous: Option<&ProgramStatus>,
    inputs: &RuleInputs,
    benefit: f64,
    program: &Program,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let Some(p) = previous else {
        reasons.push("first evaluation for this program".to_string());
        return reasons;
    };
    if p.rule_version != program.rule_version {
        reasons.push(format!(
            "rule version: {} → {}",
            p.rule_version, program.rule_version
        ));
    }
    for (name, value) in inputs.iter() {
        match p.inputs.get(name) {
            Some(old) if old == value => {}
            Some(old) => reasons.push(match value {
                Scalar::Digest(_) => format!("{name}: changed"),
                _ => format!("{name}: {old} → {value}"),
            }),
            None => reasons.push(format!("{name}: now {value}")),
        }
    }
    if p.benefit != benefit {
        reasons.push(format!("benefit: {:.2} → {:.2}", p.benefit, benefit));
    }
    reasons
}

/// Whether a stored input already holds the value `now` (what `scalar(now) == *stored` says,
/// without building the scalar).
fn holds(stored: &Scalar, now: Value) -> bool {
    match (stored, now) {
        (Scalar::Bool(a), Value::Bool(b)) => *a == b,
        (Scalar::Int(a), Value::Int(b)) => *a == b,
        (Scalar::Number(a), Value::Double(b)) => *a == b,
        (Scalar::Text(a), Value::Str(b)) => same_text(a, b),
        _ => false,
    }
}

fn scalar(v: Value) -> Scalar {
    match v {
        Value::Bool(b) => Scalar::Bool(b),
        Value::Int(i) => Scalar::Int(i),
        Value::Double(d) => Scalar::Number(d),
        Value::Str(s) => Scalar::Text(s.into()),
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// A stable 64-bit digest, dependency-free, read eight bytes at a time (it is computed for
/// every program on every event, so a byte-at-a-time hash such as FNV was a tenth of the
/// per-event cost). Not for security: it only tells whether the member inputs changed, and
/// a collision can only hide a "members changed" reason, never change a verdict.
struct Digest(u64);

impl Digest {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::K).rotate_left(29);
    }

    /// Bytes with their length first, so that `ab`,`c` and `a`,`bc` differ.
    fn write(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The rest, zero-padded, as a little-endian word. Not copied into a buffer and read
            // back: that store-then-load stalled and was a third of this function's time.
            let w = if bytes.len() >= 8 {
                let mut last = [0u8; 8];
                last.copy_from_slice(&bytes[bytes.len() - 8..]);
                u64::from_le_bytes(last) >> (8 * (8 - rest.len()))
            } else {
                rest.iter()
                    .rev()
                    .fold(0u64, |w, b| (w << 8) | u64::from(*b))
            };
            self.word(w);
        }
    }
}

/// Builds the input an evaluation reads.
pub fn input_for<'a>(h: &'a Household, facts: &'a Facts) -> Input<'a> {
    Input {
        household: h,
        facts,
        need_score: h.need_score.as_ref().map_or(0.0, |s| s.score),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reducer::apply;
    use crate::score::PmtModel;
    use crate::strategies::*;
    use proptest::prelude::*;

    const CHILD_GRANT: &str = include_str!("../../../../programs/child-grant.yaml");
    const PENSION: &str = include_str!("../../../../programs/old-age-pension.yaml");
    const FOOD_AID: &str = include_str!("../../../../programs/food-aid.yaml");

    fn programs() -> Vec<Program> {
        [CHILD_GRANT, PENSION, FOOD_AID]
            .iter()
            .map(|t| Program::from_yaml(t).unwrap())
            .collect()
    }

    fn scored(mut h: Household) -> Household {
        h.need_score = Some(PmtModel::default_model().score(&h));
        h
    }

    fn program(rule: &str, benefit: &str) -> Result<Program, ProgramError> {
        Program::from_yaml(&format!(
            "id: t\nname: T\nowner: O\npurpose: P\ndata_sharing_agreement: D\nrule_version: 1\nrule: \"{rule}\"\nbenefit: \"{benefit}\"\nfields_allowed: [need_score]\n"
        ))
    }

    #[test]
    fn the_digest_reads_a_tail_as_its_zero_padded_word() {
        // Stored digests must not change with how the tail is read.
        for len in 0..24u8 {
            let bytes: Vec<u8> = (1..=len).map(|b| b.wrapping_mul(37)).collect();
            let mut fast = Digest::new();
            fast.write(&bytes);
            let mut padded = Digest::new();
            padded.word(bytes.len() as u64);
            for c in bytes.chunks(8) {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                padded.word(u64::from_le_bytes(w));
            }
            assert_eq!(fast.0, padded.0, "{len} bytes");
        }
    }

    #[test]
    fn a_program_survives_the_trip_to_a_file_and_back() {
        for p in programs() {
            assert_eq!(Program::from_file(p.to_file()).unwrap(), p);
        }
    }

    #[test]
    fn shipped_programs_load() {
        let ps = programs();
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[0].rule.member_fields, vec![MemberField::Age]);
    }

    #[test]
    fn an_unknown_field_is_rejected_at_load_with_its_position() {
        let err = program(
            "household.need_score >= 60.0 &&\\n household.membres.size() > 2",
            "1.0",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `household.membres`"), "{err}");
        assert!(err.contains("line 2 column 12"), "{err}");
        let err = program("household.members.exists(m, m.agee < 5)", "1.0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`m.agee`") && err.contains("line 1 column 31"),
            "{err}"
        );
        let err = program("household.need_score >= ", "1.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rule does not parse"), "{err}");
    }

    #[test]
    fn type_errors_are_rejected_at_load() {
        for (rule, benefit, expect) in [
            ("household.need_score", "1.0", "rule must be a bool"),
            (
                "household.area > 3",
                "1.0",
                "cannot compare a string with a int",
            ),
            ("true", "household.area", "benefit must be a double"),
            (
                "household.members.map(m, m.age).size() > 0",
                "1.0",
                "map() is not supported",
            ),
            ("household.size in household.members", "1.0", "literal list"),
            (
                "frobnicate(household.size)",
                "1.0",
                "unknown function `frobnicate`",
            ),
        ] {
            let err = program(rule, benefit).unwrap_err().to_string();
            assert!(err.contains(expect), "{rule}: {err}");
        }
    }

    #[test]
    fn rules_evaluate_on_the_household() {
        let h = scored(apply(None, &fixed_registration(1)).unwrap().household);
        let facts = Facts::of(&h);
        let input = input_for(&h, &facts);
        let ps = programs();
        let child = ps[0].evaluate(&input).unwrap();
        assert!(child.eligible, "score {:?}", h.need_score);
        assert_eq!(child.benefit, 150.0, "one child under 5");
        let check = |rule: &str| {
            program(rule, "1.0")
                .unwrap()
                .evaluate(&input)
                .unwrap()
                .eligible
        };
        assert!(check("household.members.exists_one(m, m.age >= 65)"));
        assert!(check("household.members.all(m, m.age < 80)"));
        assert!(check("household.members.filter(m, m.age < 18).size() == 2"));
        assert!(check(
            "household.members.filter(m, m.age < 18).exists(m, m.sex == 'female')"
        ));
        assert!(check(
            "household.area.startsWith('R02.D01') && size(household.members) == 5"
        ));
        assert!(check(
            "household.size * 2 > 9.5 && household.size / 2 == 2 && household.size % 2 == 1"
        ));
        assert!(check(
            "household.wall_material in ['natural', 'rudimentary']"
        ));
        assert!(check("(household.has_electricity ? 1 : 2.5) == 2.5"));
        assert!(!check("household.members.exists(m, m.disabled)"));
        assert!(!check("!(household.size > 1)"));
        let err = program("household.size / (household.size - 5) > 0", "1.0")
            .unwrap()
            .evaluate(&input);
        assert!(
            err.is_err(),
            "integer division by zero is an evaluation error"
        );
    }

    #[test]
    fn decide_reports_entered_changed_exited_with_reasons() {
        let p = &programs()[0];
        let h = scored(apply(None, &fixed_registration(1)).unwrap().household);
        let f = Facts::of(&h);
        let d1 = p.decide(None, &input_for(&h, &f)).unwrap();
        assert_eq!(d1.kind, ChangeKind::Entered);
        assert_eq!(d1.reasons, vec!["first evaluation for this program"]);
        // The child under 5 dies: the household exits, and the reason names the members input.
        let died = event(
            1,
            1,
            2,
            crate::event::Payload::PersonDied(crate::event::PersonDied {
                person_id: person(1, 2),
                date_of_death: crate::ids::Date(0),
            }),
        );
        let h2 = scored(apply(Some(&h), &died).unwrap().household);
        let f2 = Facts::of(&h2);
        let d2 = p.decide(Some(&d1.status), &input_for(&h2, &f2)).unwrap();
        assert_eq!(d2.kind, ChangeKind::Exited);
        assert!(
            d2.reasons
                .iter()
                .any(|r| r.starts_with("members.age: changed")),
            "{:?}",
            d2.reasons
        );
        assert!(
            d2.reasons.iter().any(|r| r.starts_with("need_score: ")),
            "{:?}",
            d2.reasons
        );
    }

    /// The household `registration` makes (scored), and the same after `more` events too.
    fn before_and_after(
        registration: &[crate::Event],
        more: &[crate::Event],
    ) -> (Household, Household) {
        let fold = |start: Option<Household>, evs: &[crate::Event]| {
            let mut h = start;
            for e in evs {
                if let Ok(a) = apply(h.as_ref(), e) {
                    h = Some(scored(a.household));
                }
            }
            h.expect("the stream registers the household")
        };
        let old = fold(None, registration);
        let new = fold(Some(old.clone()), more);
        (old, new)
    }

    proptest! {
        #[test]
        fn refreshed_inputs_are_the_inputs_of_the_household_now(
            old_events in household_stream(1, 6),
            more in prop::collection::vec(life_event(1, 30), 0..6),
        ) {
            let (old, new) = before_and_after(&old_events, &more);
            let (fo, fnew) = (Facts::of(&old), Facts::of(&new));
            let ps = programs();
            for p in &ps {
                let mut values = Vec::new();
                p.input_values_into(&input_for(&new, &fnew), &mut values);
                let expected = p.named_inputs(values);
                // From nothing, from the same program's inputs on the old record, and from
                // another program's inputs (different names).
                let mut from_old = RuleInputs::default();
                p.refresh_inputs(&input_for(&old, &fo), &mut from_old);
                // As decoded from storage: the same names in a list of their own.
                let decoded: RuleInputs = from_old.to_vec().into_iter().collect();
                let mut from_other = RuleInputs::default();
                ps[(ps.iter().position(|q| q.id == p.id).unwrap() + 1) % ps.len()]
                    .refresh_inputs(&input_for(&old, &fo), &mut from_other);
                for mut inputs in [RuleInputs::default(), from_old, decoded, from_other] {
                    p.refresh_inputs(&input_for(&new, &fnew), &mut inputs);
                    prop_assert_eq!(&inputs, &expected);
                }
            }
        }

        #[test]
        fn diff_agrees_with_evaluating_the_rule_on_old_and_new_state(
            old_events in household_stream(1, 8),
            more in prop::collection::vec(life_event(1, 50), 0..6),
        ) {
            let (old, new) = before_and_after(&old_events, &more);
            let (fo, fnew) = (Facts::of(&old), Facts::of(&new));
            for p in programs() {
                let before = p.evaluate(&input_for(&old, &fo)).unwrap();
                let after = p.evaluate(&input_for(&new, &fnew)).unwrap();
                let status = decide(None, before.clone(), &p).status;
                let d = p.decide(Some(&status), &input_for(&new, &fnew)).unwrap();
                let expected = match (before.eligible, after.eligible) {
                    (false, true) => ChangeKind::Entered,
                    (true, false) => ChangeKind::Exited,
                    (true, true) if before.benefit != after.benefit => ChangeKind::Changed,
                    _ => ChangeKind::Unchanged,
                };
                prop_assert_eq!(d.kind, expected);
                prop_assert_eq!(d.status.eligible, after.eligible);
                if expected != ChangeKind::Unchanged {
                    prop_assert!(!d.reasons.is_empty(), "a change says why");
                }
            }
        }
    }
}

/// Our evaluator against cel-rust's interpreter on the same CEL text: an independent
/// implementation, so a semantic slip in ours shows up as a disagreement.
#[cfg(test)]
mod oracle {
    use super::rule::{read_household_field, read_member_field};
    use super::*;
    use crate::reducer::apply;
    use crate::score::PmtModel;
    use crate::strategies::*;
    use cel_interpreter::{Context, Program as CelProgram, Value as Cel};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn cel(v: Value) -> Cel {
        match v {
            Value::Bool(b) => Cel::Bool(b),
            Value::Int(i) => Cel::Int(i),
            Value::Double(d) => Cel::Float(d),
            Value::Str(s) => Cel::String(Arc::new(s.to_string())),
        }
    }

    /// The household as a CEL map with every field rules may read.
    fn as_cel(input: &Input) -> Cel {
        let mut map: HashMap<String, Cel> = HashMap::new();
        for f in HouseholdField::ALL {
            if *f != HouseholdField::Members {
                map.insert(f.name().into(), cel(read_household_field(*f, input)));
            }
        }
        let members: Vec<Cel> = input
            .household
            .members
            .iter()
            .map(|m| {
                let mm: HashMap<String, Cel> = MemberField::ALL
                    .iter()
                    .map(|f| {
                        (
                            f.name().to_string(),
                            // Age computed here independently of `Facts::ages`.
                            cel(read_member_field(*f, m, m.age_on(input.household.today()))),
                        )
                    })
                    .collect();
                mm.into()
            })
            .collect();
        map.insert("members".into(), Cel::List(Arc::new(members)));
        map.into()
    }

    const RULES: &[&str] = &[
        "household.need_score >= 60.0 && household.members.exists(m, m.age < 5)",
        "household.need_score >= 40.0 && household.members.exists(m, m.age >= 65 && m.monthly_income < 1500.0)",
        "household.need_score >= 75.0 || (household.need_score >= 55.0 && household.shock_damage in ['major', 'destroyed'])",
        "household.members.all(m, m.age >= 18 || m.enrolled_in_school)",
        "household.members.exists_one(m, m.relationship == 'head' && m.sex == 'female')",
        "household.members.filter(m, m.age < 18).size() >= 2 && !household.has_electricity",
        "size(household.members.filter(m, m.disabled || m.disability_severity == 'some_difficulty')) > 0",
        "household.area.startsWith('R01') || household.water_source in ['unimproved', 'surface_water']",
        "household.income_per_capita < 800.0 ? household.size > 3 : household.durable_goods == 0",
        "household.members.filter(m, m.age >= 15).exists(m, m.employment == 'unemployed')",
        "household.land_hectares * 2.0 + household.livestock_tlu > 10.0",
        "-household.size < -2 && int(household.need_score) >= 0",
        "size(household.area) > 3 && household.area.endsWith('1') || household.area.contains('D0')",
        "(household.female_headed ? household.area : 'x').startsWith('R')",
        "household.members.all(m, m.age % 7 != 3) || household.size - 1 == household.children_under_5",
        "household.durable_goods in [0, 1, 2] && household.has_electricity in [true]",
        "household.members.filter(m, m.sex == 'male').filter(m, m.age > 20).size() != 1",
    ];

    proptest! {
        #[test]
        fn our_evaluator_agrees_with_cel_interpreter(events in household_stream(1, 6)) {
            let mut h = None;
            for e in &events {
                if let Ok(a) = apply(h.as_ref(), e) { h = Some(a.household); }
            }
            let mut h = h.unwrap();
            h.need_score = Some(PmtModel::default_model().score(&h));
            let facts = crate::facts::Facts::of(&h);
            let input = input_for(&h, &facts);
            let mut ctx = Context::default();
            ctx.add_variable_from_value("household", as_cel(&input));
            for src in RULES {
                let compiled = rule::compile("rule", src, Type::Bool).unwrap();
                let ours = compiled.eval(&input).unwrap();
                let theirs = CelProgram::compile(src).unwrap().execute(&ctx).unwrap();
                prop_assert_eq!(cel(ours), theirs, "{}", src);
            }
        }
    }
}
