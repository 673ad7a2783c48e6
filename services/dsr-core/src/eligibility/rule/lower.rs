//! Evaluation: the checked expression tree lowered to typed closures, once, when a program is
//! loaded.
//!
//! Why not walk the tree: every program is evaluated on every event, and walking boxed nodes —
//! a match per node, every intermediate result a tagged [`Value`] matched again by its parent —
//! was the largest part of the rules' cost. The compiler has already checked every operand's
//! type, so each node becomes a closure that returns a plain `bool`, `i64` or `f64`, with its
//! operator and field chosen when it is built, not on every call. Text is never returned by a
//! closure (it would borrow from the household); the few operations on text read their
//! operands through [`Text`] where they compare them.
//!
//! The semantics are the tree's, node for node; `oracle` in the parent module checks them
//! against cel-rust's interpreter.

use super::{
    household_field, member_field, ArithOp, CmpOp, Input, ListNode, Node, Quantifier, StrFn, Type,
    Value, MAX_SLOTS,
};
use crate::household::Member;
use crate::ids::same_text;
use compact_str::CompactString;
use std::sync::Arc;

/// Why an evaluation failed: the message only, so results stay small on the hot path;
/// [`super::Compiled::eval`] adds the rule's source.
pub(super) type Fail = &'static str;

/// A bound member: the record and its age (from `Facts::ages`).
type Bound<'a> = (&'a Member, u32);

/// What closures read: the input, and the members bound by the enclosing exists/all/filter.
pub(super) struct Env<'a> {
    pub input: &'a Input<'a>,
    pub slots: [Option<Bound<'a>>; MAX_SLOTS],
}

type Fun<T> = Box<dyn for<'a> Fn(&mut Env<'a>) -> Result<T, Fail> + Send + Sync>;

/// Called for each member of a list with the member bound; `Ok(true)` stops the iteration.
type Visit<'v, 'a> = dyn FnMut(&mut Env<'a>, Bound<'a>) -> Result<bool, Fail> + 'v;

/// Iterates a list of members; `Ok(true)` when a visit stopped it.
type Each =
    Box<dyn for<'a, 'v> Fn(&mut Env<'a>, &mut Visit<'v, 'a>) -> Result<bool, Fail> + Send + Sync>;

// Constructors that give closures their higher-ranked signatures (a closure passed straight to
// `Box::new` would be inferred for one lifetime only).
fn fun<T, F>(f: F) -> Fun<T>
where
    F: for<'a> Fn(&mut Env<'a>) -> Result<T, Fail> + Send + Sync + 'static,
{
    Box::new(f)
}

fn each<F>(f: F) -> Each
where
    F: for<'a, 'v> Fn(&mut Env<'a>, &mut Visit<'v, 'a>) -> Result<bool, Fail>
        + Send
        + Sync
        + 'static,
{
    Box::new(f)
}

/// A text operand, read where it is compared.
enum Text {
    Literal(CompactString),
    Household(super::HouseholdField),
    Member(usize, super::MemberField),
    Cond(Fun<bool>, Box<Text>, Box<Text>),
}

fn text<'s, 'a: 's>(t: &'s Text, env: &mut Env<'a>) -> Result<&'s str, Fail> {
    let v = match t {
        Text::Literal(s) => return Ok(s),
        Text::Household(f) => household_field(*f, env.input),
        Text::Member(slot, f) => {
            let (m, age) = bound(env, *slot)?;
            member_field(*f, m, age)
        }
        Text::Cond(c, a, b) => return if c(env)? { text(a, env) } else { text(b, env) },
    };
    match v {
        Value::Str(s) => Ok(s),
        _ => Err("expected a string"),
    }
}

fn bound<'a>(env: &Env<'a>, slot: usize) -> Result<Bound<'a>, Fail> {
    env.slots[slot].ok_or("member variable used outside its loop")
}

/// A compiled expression, ready to evaluate. Cloning shares it.
#[derive(Clone)]
pub(super) struct Lowered(Arc<Root>);

enum Root {
    Bool(Fun<bool>),
    Int(Fun<i64>),
    Double(Fun<f64>),
    Text(Text),
}

impl std::fmt::Debug for Lowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lowered")
    }
}

/// Lowered from the same tree, so equal when the trees are (compared beside it).
impl PartialEq for Lowered {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Lowered {
    pub(super) fn new(node: &Node, ty: Type) -> Lowered {
        Lowered(Arc::new(match ty {
            Type::Bool => Root::Bool(boolean(node)),
            Type::Int | Type::MemberList => Root::Int(int(node)),
            Type::Double => Root::Double(double(node)),
            Type::String | Type::Member => Root::Text(lower_text(node)),
        }))
    }

    pub(super) fn eval<'a>(&'a self, env: &mut Env<'a>) -> Result<Value<'a>, Fail> {
        match &*self.0 {
            Root::Bool(f) => f(env).map(Value::Bool),
            Root::Int(f) => f(env).map(Value::Int),
            Root::Double(f) => f(env).map(Value::Double),
            Root::Text(t) => text(t, env).map(Value::Str),
        }
    }
}

/// The type a checked node evaluates to (the compiler made both sides of every operator agree).
fn type_of(n: &Node) -> Type {
    match n {
        Node::Bool(_)
        | Node::Not(_)
        | Node::And(..)
        | Node::Or(..)
        | Node::Cmp(..)
        | Node::Quant(..)
        | Node::InList(..)
        | Node::StrCall(..) => Type::Bool,
        Node::Int(_) | Node::ToInt(_) | Node::Count(_) | Node::StrLen(_) => Type::Int,
        Node::Double(_) | Node::ToDouble(_) => Type::Double,
        Node::Str(_) => Type::String,
        Node::Household(super::HouseholdField::Members) => Type::Int,
        Node::Household(f) => f.ty(),
        Node::Member(_, f) => f.ty(),
        Node::Neg(a) | Node::Cond(_, a, _) | Node::Arith(_, a, _) => type_of(a),
    }
}

fn lower_text(n: &Node) -> Text {
    match n {
        Node::Str(s) => Text::Literal(s.clone()),
        Node::Household(f) => Text::Household(*f),
        Node::Member(slot, f) => Text::Member(*slot, *f),
        Node::Cond(c, a, b) => {
            Text::Cond(boolean(c), Box::new(lower_text(a)), Box::new(lower_text(b)))
        }
        _ => Text::Literal(CompactString::default()),
    }
}

/// A value read from the household or a bound member, as `T`.
fn read<T: 'static>(n: &Node, want: fn(Value) -> Option<T>) -> Option<Fun<T>> {
    match n {
        Node::Household(f) => {
            let f = *f;
            Some(fun(move |env| {
                want(household_field(f, env.input)).ok_or("a field of an unexpected type")
            }))
        }
        Node::Member(slot, f) => {
            let (slot, f) = (*slot, *f);
            Some(fun(move |env| {
                let (m, age) = bound(env, slot)?;
                want(member_field(f, m, age)).ok_or("a field of an unexpected type")
            }))
        }
        _ => None,
    }
}

/// What the three value types lower alike: a literal, a field, a conditional.
fn shared<T: Copy + Send + Sync + 'static>(
    n: &Node,
    lower: fn(&Node) -> Fun<T>,
    want: fn(Value) -> Option<T>,
) -> Option<Fun<T>> {
    let literal = match n {
        Node::Bool(b) => Some(Value::Bool(*b)),
        Node::Int(i) => Some(Value::Int(*i)),
        Node::Double(d) => Some(Value::Double(*d)),
        _ => None,
    };
    if let Some(v) = literal.and_then(want) {
        return Some(fun(move |_| Ok(v)));
    }
    if let Node::Cond(c, a, b) = n {
        let (c, a, b) = (boolean(c), lower(a), lower(b));
        return Some(fun(move |env| if c(env)? { a(env) } else { b(env) }));
    }
    read(n, want)
}

fn boolean(n: &Node) -> Fun<bool> {
    if let Some(f) = shared(n, boolean, |v| match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }) {
        return f;
    }
    match n {
        Node::Not(a) => {
            let a = boolean(a);
            fun(move |env| Ok(!a(env)?))
        }
        Node::And(a, b) => {
            let (a, b) = (boolean(a), boolean(b));
            fun(move |env| Ok(a(env)? && b(env)?))
        }
        Node::Or(a, b) => {
            let (a, b) = (boolean(a), boolean(b));
            fun(move |env| Ok(a(env)? || b(env)?))
        }
        Node::Cmp(op, a, b) => compare(*op, a, b),
        Node::Quant(q, list, slot, pred) => quantifier(*q, list, *slot, pred),
        Node::InList(x, items) => in_list(x, items),
        Node::StrCall(f, a, b) => {
            let (a, b) = (lower_text(a), lower_text(b));
            match f {
                StrFn::StartsWith => fun(move |env| Ok(text(&a, env)?.starts_with(text(&b, env)?))),
                StrFn::EndsWith => fun(move |env| Ok(text(&a, env)?.ends_with(text(&b, env)?))),
                StrFn::Contains => fun(move |env| Ok(text(&a, env)?.contains(text(&b, env)?))),
            }
        }
        _ => fun(|_| Err("expected a bool")),
    }
}

fn int(n: &Node) -> Fun<i64> {
    if let Some(f) = shared(n, int, |v| match v {
        Value::Int(i) => Some(i),
        _ => None,
    }) {
        return f;
    }
    match n {
        Node::Neg(a) => {
            let a = int(a);
            fun(move |env| a(env)?.checked_neg().ok_or("integer overflow"))
        }
        Node::Arith(op, a, b) => {
            let (a, b) = (int(a), int(b));
            let op: fn(i64, i64) -> Option<i64> = match op {
                ArithOp::Add => i64::checked_add,
                ArithOp::Sub => i64::checked_sub,
                ArithOp::Mul => i64::checked_mul,
                ArithOp::Div => i64::checked_div,
                ArithOp::Rem => i64::checked_rem,
            };
            fun(move |env| op(a(env)?, b(env)?).ok_or("integer division by zero or overflow"))
        }
        Node::ToInt(a) => {
            let a = double(a);
            fun(move |env| {
                let d = a(env)?;
                if d.is_finite() && d.abs() < 9.2e18 {
                    Ok(d.trunc() as i64)
                } else {
                    Err("double out of int range")
                }
            })
        }
        Node::Count(list) => {
            let list = members(list);
            fun(move |env| {
                let mut n = 0i64;
                list(env, &mut |_, _| {
                    n += 1;
                    Ok(false)
                })?;
                Ok(n)
            })
        }
        Node::StrLen(a) => {
            let a = lower_text(a);
            fun(move |env| Ok(text(&a, env)?.chars().count() as i64))
        }
        _ => fun(|_| Err("expected an int")),
    }
}

fn double(n: &Node) -> Fun<f64> {
    if let Some(f) = shared(n, double, |v| match v {
        Value::Double(d) => Some(d),
        _ => None,
    }) {
        return f;
    }
    match n {
        Node::Neg(a) => {
            let a = double(a);
            fun(move |env| Ok(-a(env)?))
        }
        Node::Arith(op, a, b) => {
            let (a, b) = (double(a), double(b));
            match op {
                ArithOp::Add => fun(move |env| Ok(a(env)? + b(env)?)),
                ArithOp::Sub => fun(move |env| Ok(a(env)? - b(env)?)),
                ArithOp::Mul => fun(move |env| Ok(a(env)? * b(env)?)),
                ArithOp::Div => fun(move |env| Ok(a(env)? / b(env)?)),
                ArithOp::Rem => fun(move |env| Ok(a(env)? % b(env)?)),
            }
        }
        Node::ToDouble(a) => {
            let a = int(a);
            fun(move |env| Ok(a(env)? as f64))
        }
        _ => fun(|_| Err("expected a double")),
    }
}

/// A comparison; both sides have one type. Doubles compare as IEEE numbers (NaN equals
/// nothing and is neither less nor greater), text by bytes.
fn compare(op: CmpOp, a: &Node, b: &Node) -> Fun<bool> {
    macro_rules! by_op {
        ($x:ident, $y:ident, $read:path) => {{
            match op {
                CmpOp::Eq => fun(move |env| Ok($read(&$x, env)? == $read(&$y, env)?)),
                CmpOp::Ne => fun(move |env| Ok($read(&$x, env)? != $read(&$y, env)?)),
                CmpOp::Lt => fun(move |env| Ok($read(&$x, env)? < $read(&$y, env)?)),
                CmpOp::Le => fun(move |env| Ok($read(&$x, env)? <= $read(&$y, env)?)),
                CmpOp::Gt => fun(move |env| Ok($read(&$x, env)? > $read(&$y, env)?)),
                CmpOp::Ge => fun(move |env| Ok($read(&$x, env)? >= $read(&$y, env)?)),
            }
        }};
    }
    fn call<T>(f: &Fun<T>, env: &mut Env<'_>) -> Result<T, Fail> {
        f(env)
    }
    match type_of(a) {
        Type::Int => {
            let (x, y) = (int(a), int(b));
            by_op!(x, y, call)
        }
        Type::Double => {
            let (x, y) = (double(a), double(b));
            by_op!(x, y, call)
        }
        Type::Bool => {
            let (x, y) = (boolean(a), boolean(b));
            by_op!(x, y, call)
        }
        Type::String | Type::Member | Type::MemberList => {
            let (x, y) = (lower_text(a), lower_text(b));
            by_op!(x, y, text)
        }
    }
}

fn in_list(x: &Node, items: &[Node]) -> Fun<bool> {
    match type_of(x) {
        Type::Int | Type::Double => {
            let x = double(x);
            let items: Vec<f64> = items
                .iter()
                .filter_map(|n| match n {
                    Node::Double(d) => Some(*d),
                    Node::Int(i) => Some(*i as f64),
                    _ => None,
                })
                .collect();
            fun(move |env| {
                let v = x(env)?;
                Ok(items.contains(&v))
            })
        }
        Type::Bool => {
            let x = boolean(x);
            let items: Vec<bool> = items
                .iter()
                .filter_map(|n| match n {
                    Node::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect();
            fun(move |env| {
                let v = x(env)?;
                Ok(items.contains(&v))
            })
        }
        Type::String | Type::Member | Type::MemberList => {
            let x = lower_text(x);
            let items: Vec<CompactString> = items
                .iter()
                .filter_map(|n| match n {
                    Node::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            fun(move |env| {
                let v = text(&x, env)?;
                Ok(items.iter().any(|i| same_text(i, v)))
            })
        }
    }
}

fn quantifier(q: Quantifier, list: &ListNode, slot: usize, pred: &Node) -> Fun<bool> {
    let (list, pred) = (members(list), boolean(pred));
    match q {
        Quantifier::Exists => fun(move |env| {
            list(env, &mut |env, m| {
                env.slots[slot] = Some(m);
                pred(env)
            })
        }),
        Quantifier::All => fun(move |env| {
            let stopped = list(env, &mut |env, m| {
                env.slots[slot] = Some(m);
                Ok(!pred(env)?)
            })?;
            Ok(!stopped)
        }),
        Quantifier::ExistsOne => fun(move |env| {
            let mut hits = 0u32;
            list(env, &mut |env, m| {
                env.slots[slot] = Some(m);
                hits += u32::from(pred(env)?);
                Ok(hits > 1)
            })?;
            Ok(hits == 1)
        }),
    }
}

/// The members of a list, in record order, each with its age.
fn members(list: &ListNode) -> Each {
    match list {
        ListNode::Members => each(|env, visit| {
            let input = env.input;
            let ages = input.facts.ages.iter().copied();
            for m in input.household.members.iter().zip(ages) {
                if visit(env, m)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }),
        ListNode::Filter(inner, slot, pred) => {
            let (inner, pred, slot) = (members(inner), boolean(pred), *slot);
            each(move |env, visit| {
                inner(env, &mut |env, m| {
                    env.slots[slot] = Some(m);
                    if pred(env)? {
                        visit(env, m)
                    } else {
                        Ok(false)
                    }
                })
            })
        }
    }
}
