//! Eligibility rules and benefit formulas: CEL expressions over the household.
//!
//! The text is parsed by `cel-parser` (the cel-rust project's parser, so the syntax is standard
//! CEL, macros included). dsr then compiles the parsed expression against the household's
//! schema: every field must exist and every operation must fit its operand types, so a typo or
//! a type error is reported — with its line and column — when the program is loaded, never at
//! event time. The checked tree is then lowered to typed closures (module `lower`) that read the
//! household record directly, without building a map of values per event, which keeps
//! eligibility on the per-event hot path cheap.
//!
//! Supported: literals (bool, int, double, string), `household.<field>`, member fields inside
//! `exists`, `all`, `exists_one`, `filter` over `household.members`, `size()`, `&& || ! ?:`,
//! comparisons (ints and doubles compare by value), `+ - * / %`, `in [literal list]`,
//! `startsWith`/`endsWith`/`contains`, `int()`, `double()`. Anything else is rejected at load
//! with what to use instead.

mod lower;

use crate::facts::Facts;
use crate::household::{Household, Member};
use crate::CodeList;
use cel_parser::ast::{operators as op, CallExpr, ComprehensionExpr, Expr, IdedExpr};
use cel_parser::reference::Val;
use compact_str::CompactString;

/// The type of a compiled expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Double,
    String,
    Member,
    MemberList,
}

impl Type {
    fn is_number(self) -> bool {
        matches!(self, Type::Int | Type::Double)
    }
    fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Double => "double",
            Type::String => "string",
            Type::Member => "member",
            Type::MemberList => "list of members",
        }
    }
}

macro_rules! fields {
    ($enum:ident { $($variant:ident = $name:literal : $ty:ident, $doc:literal;)+ }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $enum { $($variant),+ }
        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];
            pub fn name(self) -> &'static str { match self { $($enum::$variant => $name),+ } }
            pub fn ty(self) -> Type { match self { $($enum::$variant => Type::$ty),+ } }
            pub fn doc(self) -> &'static str { match self { $($enum::$variant => $doc),+ } }
            pub fn from_name(n: &str) -> Option<$enum> {
                match n { $($name => Some($enum::$variant),)+ _ => None }
            }
        }
    };
}

fields!(HouseholdField {
    HouseholdId = "household_id": String, "the household's registry id";
    Area = "area": String, "area code path, e.g. R01.D03.S12.V045";
    Size = "size": Int, "number of members";
    NeedScore = "need_score": Double, "need score 0-100, higher is needier";
    MonthlyIncome = "monthly_income": Double, "total reported monthly income";
    IncomePerCapita = "income_per_capita": Double, "monthly income per member";
    DependencyRatio = "dependency_ratio": Double, "dependants (<15, 65+) per working-age member";
    ChildrenUnder5 = "children_under_5": Int, "members under 5";
    ChildrenUnder18 = "children_under_18": Int, "members under 18";
    Elderly = "elderly_65_plus": Int, "members 65 or older";
    DisabledMembers = "disabled_members": Int, "members with a lot of difficulty or worse";
    FemaleHeaded = "female_headed": Bool, "the head is a woman";
    Electricity = "has_electricity": Bool, "the dwelling has electricity";
    WallMaterial = "wall_material": String, "WallMaterial code, '' if unknown";
    WaterSource = "water_source": String, "WaterSource code, '' if unknown";
    Sanitation = "sanitation": String, "Sanitation code, '' if unknown";
    LandHectares = "land_hectares": Double, "land owned or used, hectares";
    LivestockTlu = "livestock_tlu": Double, "livestock, tropical livestock units";
    DurableGoods = "durable_goods": Int, "count of durable goods";
    ShockDamage = "shock_damage": String, "DamageLevel of the last reported shock, 'none' if none";
    Members = "members": MemberList, "the members (iterate with exists/all/filter)";
});

fields!(MemberField {
    PersonId = "person_id": String, "the person's registry id";
    Age = "age": Int, "age in whole years on the household's as-of date";
    Sex = "sex": String, "Sex code";
    Relationship = "relationship": String, "Relationship code (to the head)";
    MaritalStatus = "marital_status": String, "MaritalStatus code";
    EducationLevel = "education_level": String, "EducationLevel code";
    Enrolled = "enrolled_in_school": Bool, "enrolled in school";
    Employment = "employment": String, "EmploymentStatus code";
    MonthlyIncome = "monthly_income": Double, "the member's monthly income";
    Disabled = "disabled": Bool, "a lot of difficulty or worse in a functional domain";
    DisabilityType = "disability_type": String, "DisabilityType code, '' if none assessed";
    DisabilitySeverity = "disability_severity": String, "DisabilitySeverity code, 'none' if none assessed";
});

/// Why a rule or formula was rejected at load time.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("{what} does not parse: {message}")]
    Parse { what: &'static str, message: String },
    #[error("{what}, line {line} column {column}: unknown field `{name}`; {hint}")]
    UnknownField {
        what: &'static str,
        name: String,
        line: usize,
        column: usize,
        hint: String,
    },
    #[error("{what}, line {line} column {column}: {message}")]
    Invalid {
        what: &'static str,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{what} must be a {expected}, but it is a {found}")]
    WrongResultType {
        what: &'static str,
        expected: &'static str,
        found: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Quantifier {
    Exists,
    All,
    ExistsOne,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(CompactString),
    Household(HouseholdField),
    Member(usize, MemberField),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    ToDouble(Box<Node>),
    ToInt(Box<Node>),
    Quant(Quantifier, ListNode, usize, Box<Node>),
    Count(ListNode),
    StrLen(Box<Node>),
    InList(Box<Node>, Vec<Node>),
    StrCall(StrFn, Box<Node>, Box<Node>),
}

#[derive(Clone, Debug, PartialEq)]
enum ListNode {
    Members,
    Filter(Box<ListNode>, usize, Box<Node>),
}

/// A compiled expression and what it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    pub source: String,
    pub ty: Type,
    node: Node,
    /// The tree as closures: what [`Compiled::eval`] runs.
    lowered: lower::Lowered,
    slots: usize,
    /// Household fields the expression reads, sorted.
    pub household_fields: Vec<HouseholdField>,
    /// Member fields the expression reads, sorted.
    pub member_fields: Vec<MemberField>,
}

struct Compiler<'s> {
    what: &'static str,
    source: &'s str,
    scope: Vec<(String, usize)>,
    slots: usize,
    household_fields: Vec<HouseholdField>,
    member_fields: Vec<MemberField>,
}

/// Where `needle` first appears in the source, 1-based (line, column); the parser keeps
/// positions only for syntax errors, so semantic errors find their name in the text.
fn position_of(source: &str, needle: &str) -> (usize, usize) {
    let at = source
        .match_indices(needle)
        .find(|(i, _)| {
            let before = source[..*i].chars().next_back();
            let after = source[i + needle.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
        .map(|(i, _)| i)
        .unwrap_or(0);
    let line = source[..at].matches('\n').count() + 1;
    let column = at - source[..at].rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

impl<'s> Compiler<'s> {
    fn invalid(&self, near: &str, message: impl Into<String>) -> RuleError {
        let (line, column) = position_of(self.source, near);
        RuleError::Invalid {
            what: self.what,
            message: message.into(),
            line,
            column,
        }
    }

    fn compile(&mut self, e: &IdedExpr) -> Result<(Node, Type), RuleError> {
        match &e.expr {
            Expr::Literal(v) => match v {
                Val::Boolean(b) => Ok((Node::Bool(*b), Type::Bool)),
                Val::Int(i) => Ok((Node::Int(*i), Type::Int)),
                Val::UInt(u) => Ok((Node::Int(*u as i64), Type::Int)),
                Val::Double(d) => Ok((Node::Double(*d), Type::Double)),
                Val::String(s) => Ok((Node::Str(s.as_str().into()), Type::String)),
                Val::Null => Err(self.invalid(
                    "null",
                    "null is not supported: every household field has a value",
                )),
                Val::Bytes(_) => Err(self.invalid("b", "bytes literals are not supported")),
            },
            Expr::Ident(name) => {
                if let Some((_, slot)) = self.scope.iter().rev().find(|(n, _)| n == name) {
                    return Ok((Node::Member(*slot, MemberField::PersonId), Type::Member));
                }
                if name == "household" {
                    return Err(self.invalid(
                        name,
                        "`household` is a record: use one of its fields, e.g. household.need_score",
                    ));
                }
                let (line, column) = position_of(self.source, name);
                Err(RuleError::UnknownField {
                    what: self.what,
                    name: name.clone(),
                    line,
                    column,
                    hint: "expressions start from `household` (e.g. household.size), or a variable bound by exists/all/filter".into(),
                })
            }
            Expr::Select(s) => {
                let Expr::Ident(root) = &s.operand.expr else {
                    return Err(self.invalid(
                        &s.field,
                        format!(
                            "`.{}` can only follow `household` or a member variable",
                            s.field
                        ),
                    ));
                };
                if let Some((_, slot)) = self.scope.iter().rev().find(|(n, _)| n == root) {
                    let slot = *slot;
                    let f = MemberField::from_name(&s.field).ok_or_else(|| {
                        let (line, column) = position_of(self.source, &s.field);
                        RuleError::UnknownField {
                            what: self.what,
                            name: format!("{root}.{}", s.field),
                            line,
                            column,
                            hint: format!(
                                "member fields are: {}",
                                MemberField::ALL
                                    .iter()
                                    .map(|f| f.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }
                    })?;
                    if !self.member_fields.contains(&f) {
                        self.member_fields.push(f);
                    }
                    return Ok((Node::Member(slot, f), f.ty()));
                }
                if root != "household" {
                    let (line, column) = position_of(self.source, root);
                    return Err(RuleError::UnknownField {
                        what: self.what,
                        name: root.clone(),
                        line,
                        column,
                        hint: "expressions start from `household`".into(),
                    });
                }
                let f = HouseholdField::from_name(&s.field).ok_or_else(|| {
                    let (line, column) = position_of(self.source, &s.field);
                    RuleError::UnknownField {
                        what: self.what,
                        name: format!("household.{}", s.field),
                        line,
                        column,
                        hint: format!(
                            "household fields are: {}",
                            HouseholdField::ALL
                                .iter()
                                .map(|f| f.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                })?;
                if !self.household_fields.contains(&f) {
                    self.household_fields.push(f);
                }
                Ok((Node::Household(f), f.ty()))
            }
            Expr::Call(c) => self.call(c),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(_) => {
                Err(self.invalid("[", "a list literal can only stand on the right of `in`"))
            }
            Expr::Map(_) | Expr::Struct(_) => {
                Err(self.invalid("{", "maps and messages are not supported in rules"))
            }
            Expr::Unspecified => Err(self.invalid("", "empty expression")),
        }
    }

    fn list(&mut self, e: &IdedExpr) -> Result<ListNode, RuleError> {
        match self.compile(e)? {
            (Node::Household(HouseholdField::Members), _) => Ok(ListNode::Members),
            (Node::Count(l), _) => Ok(l),
            _ => Err(self.invalid(
                "members",
                "only household.members (optionally filtered) can be iterated",
            )),
        }
    }

    fn bind(&mut self, var: &str) -> usize {
        let slot = self.slots;
        self.slots += 1;
        self.scope.push((var.to_string(), slot));
        slot
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<(Node, Type), RuleError> {
        let list = self.list(&c.iter_range)?;
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if *n == c.accu_var);
        let Expr::Call(step) = &c.loop_step.expr else {
            return Err(self.invalid(&c.iter_var, "unsupported comprehension"));
        };
        let slot = self.bind(&c.iter_var);
        let result = (|| {
            let init = &c.accu_init.expr;
            let name = step.func_name.as_str();
            let args = &step.args;
            let quant = |q| -> Option<Quantifier> { Some(q) };
            let (q, pred) = match (init, name) {
                (Expr::Literal(Val::Boolean(false)), op::LOGICAL_OR)
                    if args.len() == 2 && is_accu(&args[0]) =>
                {
                    (quant(Quantifier::Exists), &args[1])
                }
                (Expr::Literal(Val::Boolean(true)), op::LOGICAL_AND)
                    if args.len() == 2 && is_accu(&args[0]) =>
                {
                    (quant(Quantifier::All), &args[1])
                }
                (Expr::Literal(Val::Int(0)), op::CONDITIONAL) if args.len() == 3 => {
                    (quant(Quantifier::ExistsOne), &args[0])
                }
                (Expr::List(_), op::CONDITIONAL) if args.len() == 3 && is_accu(&args[2]) => {
                    let keeps_element = matches!(&args[1].expr, Expr::Call(add) if add.func_name == op::ADD
                        && matches!(add.args.get(1).map(|a| &a.expr), Some(Expr::List(l)) if l.elements.len() == 1
                            && matches!(&l.elements[0].expr, Expr::Ident(v) if *v == c.iter_var)));
                    if !keeps_element {
                        return Err(self.invalid("map", "map() is not supported in rules; use filter(), exists(), all() or size()"));
                    }
                    (None, &args[0])
                }
                _ => {
                    return Err(self.invalid(
                        "map",
                        "map() is not supported in rules; use filter(), exists(), all() or size()",
                    ))
                }
            };
            let (p, t) = self.compile(pred)?;
            if t != Type::Bool {
                return Err(self.invalid(
                    &c.iter_var,
                    format!(
                        "the condition after `{},` must be a bool, not a {}",
                        c.iter_var,
                        t.name()
                    ),
                ));
            }
            Ok(match q {
                Some(q) => (Node::Quant(q, list, slot, Box::new(p)), Type::Bool),
                None => (
                    Node::Count(ListNode::Filter(Box::new(list), slot, Box::new(p))),
                    Type::MemberList,
                ),
            })
        })();
        self.scope.pop();
        result
    }

    fn call(&mut self, c: &CallExpr) -> Result<(Node, Type), RuleError> {
        let name = c.func_name.as_str();
        let b = Box::new;
        if let Some(target) = &c.target {
            let (t, tt) = self.compile(target)?;
            return match (name, tt, c.args.len()) {
                ("size", Type::MemberList, 0) => Ok((as_count(t), Type::Int)),
                ("size", Type::String, 0) => Ok((Node::StrLen(b(t)), Type::Int)),
                ("startsWith" | "endsWith" | "contains", Type::String, 1) => {
                    let (a, at) = self.compile(&c.args[0])?;
                    if at != Type::String {
                        return Err(self.invalid(
                            name,
                            format!("{name}() takes a string, not a {}", at.name()),
                        ));
                    }
                    let f = match name {
                        "startsWith" => StrFn::StartsWith,
                        "endsWith" => StrFn::EndsWith,
                        _ => StrFn::Contains,
                    };
                    Ok((Node::StrCall(f, b(t), b(a)), Type::Bool))
                }
                _ => Err(self.invalid(
                    name,
                    format!("`{name}` cannot be called on a {}", tt.name()),
                )),
            };
        }
        let mut args = Vec::with_capacity(c.args.len());
        if name != op::IN {
            for a in &c.args {
                args.push(self.compile(a)?);
            }
        }
        let sym = match name {
            op::LOGICAL_AND => "&&",
            op::LOGICAL_OR => "||",
            op::LOGICAL_NOT => "!",
            op::NEGATE => "-",
            op::CONDITIONAL => "?",
            op::ADD => "+",
            op::SUBSTRACT => "-",
            op::MULTIPLY => "*",
            op::DIVIDE => "/",
            op::MODULO => "%",
            op::EQUALS => "==",
            op::NOT_EQUALS => "!=",
            op::LESS => "<",
            op::LESS_EQUALS => "<=",
            op::GREATER => ">",
            op::GREATER_EQUALS => ">=",
            other => other,
        };
        let mut next = || args.remove(0);
        match name {
            op::LOGICAL_AND | op::LOGICAL_OR | op::LOGICAL_NOT => {
                let n = c.args.len();
                let ops: Vec<(Node, Type)> = (0..n).map(|_| next()).collect();
                if let Some((_, t)) = ops.iter().find(|(_, t)| *t != Type::Bool) {
                    return Err(
                        self.invalid(sym, format!("`{sym}` needs bools, not a {}", t.name()))
                    );
                }
                let mut it = ops.into_iter().map(|(n, _)| n);
                let a = it.next().unwrap_or(Node::Bool(true));
                Ok((
                    match name {
                        op::LOGICAL_NOT => Node::Not(b(a)),
                        op::LOGICAL_AND => {
                            Node::And(b(a), b(it.next().unwrap_or(Node::Bool(true))))
                        }
                        _ => Node::Or(b(a), b(it.next().unwrap_or(Node::Bool(false)))),
                    },
                    Type::Bool,
                ))
            }
            op::NEGATE => {
                let (a, t) = next();
                if !t.is_number() {
                    return Err(self.invalid("-", format!("cannot negate a {}", t.name())));
                }
                Ok((Node::Neg(b(a)), t))
            }
            op::CONDITIONAL => {
                let (cond, ct) = next();
                let (x, xt) = next();
                let (y, yt) = next();
                if ct != Type::Bool {
                    return Err(self.invalid("?", "the condition before `?` must be a bool"));
                }
                let t = if xt == yt {
                    xt
                } else if xt.is_number() && yt.is_number() {
                    Type::Double
                } else {
                    return Err(self.invalid(
                        "?",
                        format!(
                            "both branches of `? :` must have one type, not {} and {}",
                            xt.name(),
                            yt.name()
                        ),
                    ));
                };
                let (x, y) = if t == Type::Double {
                    (to_double(x, xt), to_double(y, yt))
                } else {
                    (x, y)
                };
                Ok((Node::Cond(b(cond), b(x), b(y)), t))
            }
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO => {
                let (x, xt) = next();
                let (y, yt) = next();
                if !(xt.is_number() && yt.is_number()) {
                    return Err(self.invalid(
                        sym,
                        format!("`{sym}` needs numbers, not {} and {}", xt.name(), yt.name()),
                    ));
                }
                let arith = match name {
                    op::ADD => ArithOp::Add,
                    op::SUBSTRACT => ArithOp::Sub,
                    op::MULTIPLY => ArithOp::Mul,
                    op::DIVIDE => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                if xt == Type::Int && yt == Type::Int {
                    Ok((Node::Arith(arith, b(x), b(y)), Type::Int))
                } else {
                    Ok((
                        Node::Arith(arith, b(to_double(x, xt)), b(to_double(y, yt))),
                        Type::Double,
                    ))
                }
            }
            op::EQUALS
            | op::NOT_EQUALS
            | op::LESS
            | op::LESS_EQUALS
            | op::GREATER
            | op::GREATER_EQUALS => {
                let (x, xt) = next();
                let (y, yt) = next();
                let cmp = match name {
                    op::EQUALS => CmpOp::Eq,
                    op::NOT_EQUALS => CmpOp::Ne,
                    op::LESS => CmpOp::Lt,
                    op::LESS_EQUALS => CmpOp::Le,
                    op::GREATER => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                let ordered = !matches!(cmp, CmpOp::Eq | CmpOp::Ne);
                let ok = (xt.is_number() && yt.is_number())
                    || (xt == yt
                        && matches!(xt, Type::String | Type::Bool)
                        && !(ordered && xt == Type::Bool));
                if !ok {
                    return Err(self.invalid(
                        sym,
                        format!(
                            "cannot compare a {} with a {} using `{sym}`",
                            xt.name(),
                            yt.name()
                        ),
                    ));
                }
                if xt.is_number() && xt != yt {
                    Ok((
                        Node::Cmp(cmp, b(to_double(x, xt)), b(to_double(y, yt))),
                        Type::Bool,
                    ))
                } else {
                    Ok((Node::Cmp(cmp, b(x), b(y)), Type::Bool))
                }
            }
            op::IN => {
                let (x, xt) = self.compile(&c.args[0])?;
                let Expr::List(list) = &c.args[1].expr else {
                    return Err(self.invalid("in", "`in` needs a literal list on its right, e.g. m.relationship in ['head', 'spouse']"));
                };
                let mut items = Vec::with_capacity(list.elements.len());
                for el in &list.elements {
                    let (n, t) = self.compile(el)?;
                    let lit = matches!(
                        n,
                        Node::Int(_) | Node::Double(_) | Node::Str(_) | Node::Bool(_)
                    );
                    if !lit || !(t == xt || (t.is_number() && xt.is_number())) {
                        return Err(self.invalid(
                            "in",
                            format!("the list after `in` must hold {} literals", xt.name()),
                        ));
                    }
                    items.push(if xt.is_number() { to_double(n, t) } else { n });
                }
                let x = if xt.is_number() { to_double(x, xt) } else { x };
                Ok((Node::InList(b(x), items), Type::Bool))
            }
            "size" if c.args.len() == 1 => {
                let (x, t) = next();
                match t {
                    Type::MemberList => Ok((as_count(x), Type::Int)),
                    Type::String => Ok((Node::StrLen(b(x)), Type::Int)),
                    _ => {
                        Err(self
                            .invalid("size", format!("size() of a {} is not defined", t.name())))
                    }
                }
            }
            "double" if c.args.len() == 1 => {
                let (x, t) = next();
                if !t.is_number() {
                    return Err(self.invalid(
                        "double",
                        format!("double() of a {} is not supported", t.name()),
                    ));
                }
                Ok((to_double(x, t), Type::Double))
            }
            "int" if c.args.len() == 1 => {
                let (x, t) = next();
                match t {
                    Type::Int => Ok((x, Type::Int)),
                    Type::Double => Ok((Node::ToInt(b(x)), Type::Int)),
                    _ => {
                        Err(self
                            .invalid("int", format!("int() of a {} is not supported", t.name())))
                    }
                }
            }
            other => Err(self.invalid(other, format!("unknown function `{other}`"))),
        }
    }
}

fn to_double(n: Node, t: Type) -> Node {
    match (n, t) {
        (Node::Int(i), _) => Node::Double(i as f64),
        (n, Type::Int) => Node::ToDouble(Box::new(n)),
        (n, _) => n,
    }
}

fn as_count(n: Node) -> Node {
    match n {
        Node::Household(HouseholdField::Members) => Node::Count(ListNode::Members),
        other => other,
    }
}

/// Compiles `source`, which must produce a value of type `expected` (ints are accepted where
/// doubles are expected).
pub fn compile(what: &'static str, source: &str, expected: Type) -> Result<Compiled, RuleError> {
    // The ANTLR runtime under cel-parser panics on some malformed input (e.g. a dangling
    // operator) instead of returning an error; a bad rule must be an error, never a crash.
    let parsed = std::panic::catch_unwind(|| cel_parser::Parser::new().parse(source))
        .map_err(|_| RuleError::Parse {
            what,
            message: "the expression is incomplete or malformed (check for a dangling operator or unbalanced parentheses)".into(),
        })?
        .map_err(|e| RuleError::Parse {
            what,
            message: e.to_string(),
        })?;
    let mut c = Compiler {
        what,
        source,
        scope: Vec::new(),
        slots: 0,
        household_fields: Vec::new(),
        member_fields: Vec::new(),
    };
    let (node, ty) = c.compile(&parsed)?;
    let (node, ty) = match (expected, ty) {
        (Type::Double, Type::Int) => (to_double(node, ty), Type::Double),
        (e, t) if e == t => (node, ty),
        (e, t) => {
            return Err(RuleError::WrongResultType {
                what,
                expected: e.name(),
                found: t.name(),
            })
        }
    };
    c.household_fields.sort();
    c.member_fields.sort();
    Ok(Compiled {
        source: source.to_string(),
        ty,
        lowered: lower::Lowered::new(&node, ty),
        node,
        slots: c.slots,
        household_fields: c.household_fields,
        member_fields: c.member_fields,
    })
}

/// A value during evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
}

/// A failure while evaluating (integer division by zero or overflow).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("evaluating `{source_text}`: {message}")]
pub struct EvalError {
    pub source_text: String,
    pub message: &'static str,
}

/// What an evaluation reads: the household, facts derived from it, and its current score.
pub struct Input<'a> {
    pub household: &'a Household,
    pub facts: &'a Facts,
    pub need_score: f64,
}

const MAX_SLOTS: usize = 8;

impl Compiled {
    pub fn eval<'a>(&'a self, input: &'a Input<'a>) -> Result<Value<'a>, EvalError> {
        if self.slots > MAX_SLOTS {
            return Err(self.err("more than 8 nested exists/all/filter"));
        }
        let mut env = lower::Env {
            input,
            slots: [None; MAX_SLOTS],
        };
        self.lowered
            .eval(&mut env)
            .map_err(|message| self.err(message))
    }

    fn err(&self, message: &'static str) -> EvalError {
        EvalError {
            source_text: self.source.clone(),
            message,
        }
    }
}

fn household_field<'a>(f: HouseholdField, i: &'a Input<'a>) -> Value<'a> {
    use HouseholdField as F;
    use Value as V;
    let h = i.household;
    let d = h.dwelling.as_ref();
    match f {
        F::HouseholdId => V::Str(h.household_id.as_str()),
        F::Area => V::Str(h.area.as_str()),
        F::Size => V::Int(i.facts.size as i64),
        F::NeedScore => V::Double(i.need_score),
        F::MonthlyIncome => V::Double(i.facts.monthly_income),
        F::IncomePerCapita => V::Double(i.facts.income_per_capita()),
        F::DependencyRatio => V::Double(i.facts.dependency_ratio()),
        F::ChildrenUnder5 => V::Int(i.facts.children_under_5 as i64),
        F::ChildrenUnder18 => V::Int(i.facts.children_under_18 as i64),
        F::Elderly => V::Int(i.facts.elderly_65_plus as i64),
        F::DisabledMembers => V::Int(i.facts.disabled_members as i64),
        F::FemaleHeaded => V::Bool(i.facts.female_headed),
        F::Electricity => V::Bool(d.is_some_and(|d| d.electricity)),
        F::WallMaterial => V::Str(d.map_or("", |d| d.wall_material.symbol())),
        F::WaterSource => V::Str(d.map_or("", |d| d.water_source.symbol())),
        F::Sanitation => V::Str(d.map_or("", |d| d.sanitation.symbol())),
        F::LandHectares => V::Double(h.assets.land_hectares),
        F::LivestockTlu => V::Double(h.assets.livestock_tlu),
        F::DurableGoods => V::Int(h.assets.durable_goods() as i64),
        F::ShockDamage => V::Str(
            h.shock_damage
                .as_ref()
                .map_or("none", |s| s.damage.symbol()),
        ),
        F::Members => V::Int(h.members.len() as i64),
    }
}

fn member_field(f: MemberField, m: &Member, age: u32) -> Value<'_> {
    use MemberField as F;
    use Value as V;
    match f {
        F::PersonId => V::Str(m.person_id.as_str()),
        F::Age => V::Int(age as i64),
        F::Sex => V::Str(m.sex.symbol()),
        F::Relationship => V::Str(m.relationship.symbol()),
        F::MaritalStatus => V::Str(m.marital_status.symbol()),
        F::EducationLevel => V::Str(m.education_level.symbol()),
        F::Enrolled => V::Bool(m.enrolled_in_school),
        F::Employment => V::Str(m.employment.symbol()),
        F::MonthlyIncome => V::Double(m.incomes.total()),
        F::Disabled => V::Bool(m.is_disabled()),
        F::DisabilityType => V::Str(m.disability.map_or("", |d| d.disability_type.symbol())),
        F::DisabilitySeverity => V::Str(m.disability.map_or("none", |d| d.severity.symbol())),
    }
}

/// The value of a household field, for reasons and input tracking.
pub(crate) fn read_household_field<'a>(f: HouseholdField, i: &'a Input<'a>) -> Value<'a> {
    household_field(f, i)
}

pub(crate) fn read_member_field(f: MemberField, m: &Member, age: u32) -> Value<'_> {
    member_field(f, m, age)
}
