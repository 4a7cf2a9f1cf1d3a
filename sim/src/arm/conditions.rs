//! Role assignment conditions (Azure ABAC, `conditionVersion` 2.0), the part that delegates role assignment
//! management: conditions over `Microsoft.Authorization/roleAssignments/write` and `/delete` and the role
//! definition, principal and principal type of the assignment being written (`@Request[…]`) or deleted
//! (`@Resource[…]`), as Microsoft's "Examples to delegate Azure role assignment management with conditions"
//! writes them, e.g.
//!
//! ```text
//! ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
//!  (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {…}
//!   AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))
//! AND
//! ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR
//!  (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {…}))
//! ```
//!
//! Grammar (docs `conditions-format.md`): `AND`/`&&`, `OR`/`||`, `NOT`/`!`, parentheses (an expression that
//! mixes AND and OR on one level must say the order with parentheses, as the docs require),
//! `ActionMatches{'pattern'}`, and `@Request[attr]` / `@Resource[attr]` compared with `GuidEquals`,
//! `GuidNotEquals`, `StringEquals[IgnoreCase]` or `StringNotEquals[IgnoreCase]`, bare or under one of the
//! cross-product quantifiers `ForAnyOfAnyValues`, `ForAllOfAnyValues`, `ForAnyOfAllValues`,
//! `ForAllOfAllValues`, against a value or a `{…}` set. Anything else (Storage attributes, sub-operations,
//! `StringLike`, numbers, principal or environment attributes) is refused when the assignment is written, so
//! a condition the simulator cannot evaluate is never stored and silently ignored.
//!
//! Evaluation is three-valued: an attribute the action does not have (a request attribute on a delete, any
//! attribute on a read) is unknown, `OR` with a true side is true and `AND` with a false side is false
//! whatever the other side, and a condition that is not true does not authorize (fail closed).

use std::fmt;

/// The longest condition Azure accepts [DOC: 8 KB, docs/azure.md#role-assignment-rules].
pub const MAX_CONDITION_LEN: usize = 8 * 1024;

/// The only condition version Azure supports [DOC conditions-troubleshoot: "Set conditionVersion property to
/// 2.0"].
pub const CONDITION_VERSION: &str = "2.0";

/// Microsoft's "constrain roles and principal types" example: role assignments of these roles (GUIDs), to
/// service principals only, may be written and deleted; nothing else. The condition README has an
/// administrator put on the operator's Role Based Access Control Administrator assignment.
pub fn delegation_condition<S: AsRef<str>>(role_guids: &[S]) -> String {
    let roles = role_guids.iter().map(AsRef::as_ref).collect::<Vec<&str>>().join(", ");
    let clause = |action: &str, source: &str| {
        format!(
            "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR \
             (@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals \
             {{{roles}}} AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] \
             ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    };
    format!("{} AND {}", clause("write", "Request"), clause("delete", "Resource"))
}

/// Why a condition cannot be evaluated: the text names what, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError(pub String);

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConditionError {}

/// Where an attribute comes from: the request (the assignment being written) or the resource (the assignment
/// being deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Request,
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    RoleDefinitionId,
    PrincipalId,
    PrincipalType,
}

impl Attribute {
    fn is_guid(self) -> bool {
        matches!(self, Self::RoleDefinitionId | Self::PrincipalId)
    }
}

/// How the attribute's values (left) meet the condition's values (right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// Some left value matches some right value (also the bare operator).
    AnyOfAny,
    AllOfAny,
    AnyOfAll,
    AllOfAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GuidEquals,
    GuidNotEquals,
    StringEquals,
    StringEqualsIgnoreCase,
    StringNotEquals,
    StringNotEqualsIgnoreCase,
}

impl Comparison {
    fn on_guids(self) -> bool {
        matches!(self, Self::GuidEquals | Self::GuidNotEquals)
    }

    fn holds(self, left: &str, right: &str) -> bool {
        match self {
            Self::GuidEquals => same_guid(left, right),
            Self::GuidNotEquals => !same_guid(left, right),
            Self::StringEquals => left == right,
            Self::StringEqualsIgnoreCase => left.eq_ignore_ascii_case(right),
            Self::StringNotEquals => left != right,
            Self::StringNotEqualsIgnoreCase => !left.eq_ignore_ascii_case(right),
        }
    }
}

fn same_guid(a: &str, b: &str) -> bool {
    match (uuid::Uuid::parse_str(a.trim()), uuid::Uuid::parse_str(b.trim())) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    ActionMatches(String),
    Compare {
        source: Source,
        attribute: Attribute,
        quantifier: Quantifier,
        comparison: Comparison,
        values: Vec<String>,
    },
}

/// The attributes of one role assignment: the one a write asks for, or the one a delete removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The role definition's GUID.
    pub role_definition_id: Option<String>,
    pub principal_id: Option<String>,
    pub principal_type: Option<String>,
}

impl Attributes {
    fn get(&self, attribute: Attribute) -> Option<&str> {
        match attribute {
            Attribute::RoleDefinitionId => self.role_definition_id.as_deref(),
            Attribute::PrincipalId => self.principal_id.as_deref(),
            Attribute::PrincipalType => self.principal_type.as_deref(),
        }
    }
}

/// What a condition is evaluated against: the action asked for and the attributes it carries.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub action: &'a str,
    /// `@Request[…]`: present for a role assignment write.
    pub request: Option<&'a Attributes>,
    /// `@Resource[…]`: present for a role assignment delete.
    pub resource: Option<&'a Attributes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Expr {
    /// Whether the condition allows the action: only a definite true does.
    pub fn allows(&self, cx: &Context<'_>) -> bool {
        self.eval(cx) == Truth::True
    }

    fn eval(&self, cx: &Context<'_>) -> Truth {
        match self {
            Self::And(items) => {
                let mut out = Truth::True;
                for item in items {
                    match item.eval(cx) {
                        Truth::False => return Truth::False,
                        Truth::Unknown => out = Truth::Unknown,
                        Truth::True => {}
                    }
                }
                out
            }
            Self::Or(items) => {
                let mut out = Truth::False;
                for item in items {
                    match item.eval(cx) {
                        Truth::True => return Truth::True,
                        Truth::Unknown => out = Truth::Unknown,
                        Truth::False => {}
                    }
                }
                out
            }
            Self::Not(inner) => match inner.eval(cx) {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Unknown => Truth::Unknown,
            },
            Self::ActionMatches(pattern) => truth(crate::arm::action_matches(pattern, cx.action)),
            Self::Compare { source, attribute, quantifier, comparison, values } => {
                let attributes = match source {
                    Source::Request => cx.request,
                    Source::Resource => cx.resource,
                };
                let Some(left) = attributes.and_then(|a| a.get(*attribute)) else {
                    return Truth::Unknown;
                };
                // Every attribute here has one value, so the quantifiers differ only on the right side.
                let matches = |r: &String| comparison.holds(left, r);
                truth(match quantifier {
                    Quantifier::AnyOfAny | Quantifier::AllOfAny => values.iter().any(matches),
                    Quantifier::AnyOfAll | Quantifier::AllOfAll => values.iter().all(matches),
                })
            }
        }
    }
}

fn truth(b: bool) -> Truth {
    if b { Truth::True } else { Truth::False }
}

/// Checks `conditionVersion` and parses `condition`: what `RoleAssignments_Create` accepts.
pub fn parse_versioned(condition: &str, version: Option<&str>) -> Result<Expr, ConditionError> {
    if let Some(v) = version
        && v.trim() != CONDITION_VERSION
    {
        return Err(ConditionError(format!(
            "conditionVersion '{v}' is not supported; the only version is '{CONDITION_VERSION}'"
        )));
    }
    if condition.len() > MAX_CONDITION_LEN {
        return Err(ConditionError(format!(
            "the condition is {} bytes long; the limit is {MAX_CONDITION_LEN}",
            condition.len()
        )));
    }
    parse(condition)
}

/// Parses a condition (see the module documentation for what is understood).
pub fn parse(text: &str) -> Result<Expr, ConditionError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0 };
    let expr = p.expr()?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(ConditionError(format!("unexpected {t} after a complete condition"))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    /// `ActionMatches{'pattern'}`.
    ActionMatches(String),
    /// `@Request[name]` or `@Resource[name]`.
    Attribute(Source, String),
    /// A word: an operator such as `ForAnyOfAnyValues:GuidEquals`, or an unquoted value.
    Word(String),
    /// `'text'`.
    Quoted(String),
    /// `{v1, v2}`.
    Set(Vec<String>),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("'('"),
            Self::Close => f.write_str("')'"),
            Self::And => f.write_str("AND"),
            Self::Or => f.write_str("OR"),
            Self::Not => f.write_str("NOT"),
            Self::ActionMatches(p) => write!(f, "ActionMatches{{'{p}'}}"),
            Self::Attribute(Source::Request, a) => write!(f, "@Request[{a}]"),
            Self::Attribute(Source::Resource, a) => write!(f, "@Resource[{a}]"),
            Self::Word(w) => write!(f, "'{w}'"),
            Self::Quoted(q) => write!(f, "'{q}' (quoted)"),
            Self::Set(_) => f.write_str("a {…} value set"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '!' => {
                out.push(Token::Not);
                i += 1;
            }
            '&' | '|' => {
                if chars.get(i + 1) != Some(&c) {
                    return Err(ConditionError(format!("a single '{c}' at character {i}; use {c}{c}")));
                }
                out.push(if c == '&' { Token::And } else { Token::Or });
                i += 2;
            }
            '\'' => {
                let (s, next) = quoted(&chars, i)?;
                out.push(Token::Quoted(s));
                i = next;
            }
            '{' => {
                let (set, next) = value_set(&chars, i)?;
                out.push(Token::Set(set));
                i = next;
            }
            '@' => {
                let (token, next) = attribute(&chars, i)?;
                out.push(token);
                i = next;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"(){}'!&|@".contains(chars[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(ConditionError(format!("unexpected '{c}' at character {i}")));
                }
                let word: String = chars[start..i].iter().collect();
                if word.eq_ignore_ascii_case("ActionMatches") {
                    let (set, next) = value_set(&chars, skip_space(&chars, i))?;
                    match set.as_slice() {
                        [pattern] => out.push(Token::ActionMatches(pattern.clone())),
                        _ => {
                            return Err(ConditionError(String::from(
                                "ActionMatches takes exactly one quoted action pattern",
                            )));
                        }
                    }
                    i = next;
                } else if word.eq_ignore_ascii_case("AND") {
                    out.push(Token::And);
                } else if word.eq_ignore_ascii_case("OR") {
                    out.push(Token::Or);
                } else if word.eq_ignore_ascii_case("NOT") {
                    out.push(Token::Not);
                } else {
                    out.push(Token::Word(word));
                }
            }
        }
    }
    Ok(out)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// `'…'` starting at `start`; returns the text and the index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), ConditionError> {
    let close = chars[start + 1..]
        .iter()
        .position(|&c| c == '\'')
        .ok_or_else(|| ConditionError(format!("a quote at character {start} is never closed")))?;
    let end = start + 1 + close;
    Ok((chars[start + 1..end].iter().collect(), end + 1))
}

/// `{v, 'v', …}` starting at `start` (values quoted or bare, comma-separated); returns them and the index
/// after `}`.
fn value_set(chars: &[char], start: usize) -> Result<(Vec<String>, usize), ConditionError> {
    if chars.get(start) != Some(&'{') {
        return Err(ConditionError(format!("expected '{{' at character {start}")));
    }
    let mut values = Vec::new();
    let mut i = start + 1;
    loop {
        i = skip_space(chars, i);
        match chars.get(i) {
            None => return Err(ConditionError(format!("a '{{' at character {start} is never closed"))),
            Some('}') if values.is_empty() => {
                return Err(ConditionError(format!("an empty value set at character {start}")));
            }
            Some('\'') => {
                let (s, next) = quoted(chars, i)?;
                values.push(s);
                i = next;
            }
            Some(_) => {
                let begin = i;
                while i < chars.len() && !matches!(chars[i], ',' | '}') && !chars[i].is_whitespace() {
                    i += 1;
                }
                if begin == i {
                    return Err(ConditionError(format!("a missing value at character {i}")));
                }
                values.push(chars[begin..i].iter().collect());
            }
        }
        i = skip_space(chars, i);
        match chars.get(i) {
            Some(',') => i += 1,
            Some('}') => return Ok((values, i + 1)),
            _ => return Err(ConditionError(format!("expected ',' or '}}' at character {i}"))),
        }
    }
}

/// `@Request[name]` or `@Resource[name]` starting at `start`.
fn attribute(chars: &[char], start: usize) -> Result<(Token, usize), ConditionError> {
    let open = chars[start..]
        .iter()
        .position(|&c| c == '[')
        .map(|p| start + p)
        .ok_or_else(|| ConditionError(format!("an attribute at character {start} without '['")))?;
    let source_name: String = chars[start + 1..open].iter().collect();
    let source = if source_name.eq_ignore_ascii_case("Request") {
        Source::Request
    } else if source_name.eq_ignore_ascii_case("Resource") {
        Source::Resource
    } else {
        return Err(ConditionError(format!(
            "the attribute source '@{source_name}' is not simulated; only @Request and @Resource are"
        )));
    };
    let close = chars[open..]
        .iter()
        .position(|&c| c == ']')
        .map(|p| open + p)
        .ok_or_else(|| ConditionError(format!("a '[' at character {open} is never closed")))?;
    Ok((Token::Attribute(source, chars[open + 1..close].iter().collect()), close + 1))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// `term ((AND|OR) term)*`, all AND or all OR on one level.
    fn expr(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.term()?];
        let mut joiner: Option<Token> = None;
        while let Some(op @ (Token::And | Token::Or)) = self.peek().cloned() {
            if joiner.as_ref().is_some_and(|j| *j != op) {
                return Err(ConditionError(String::from(
                    "AND and OR are mixed on one level; add parentheses to say which comes first",
                )));
            }
            joiner = Some(op);
            self.pos += 1;
            items.push(self.term()?);
        }
        Ok(match joiner {
            None => items.pop().unwrap_or(Expr::And(Vec::new())),
            Some(Token::And) => Expr::And(items),
            Some(_) => Expr::Or(items),
        })
    }

    fn term(&mut self) -> Result<Expr, ConditionError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.expr()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    Some(t) => Err(ConditionError(format!("expected ')', found {t}"))),
                    None => Err(ConditionError(String::from("a '(' is never closed"))),
                }
            }
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.term()?))),
            Some(Token::ActionMatches(pattern)) => Ok(Expr::ActionMatches(pattern)),
            Some(Token::Attribute(source, name)) => self.comparison(source, &name),
            Some(t) => Err(ConditionError(format!("expected an expression, found {t}"))),
            None => Err(ConditionError(String::from("the condition ends where an expression was expected"))),
        }
    }

    fn comparison(&mut self, source: Source, name: &str) -> Result<Expr, ConditionError> {
        let attribute = attribute_named(name)?;
        let Some(Token::Word(op)) = self.next() else {
            return Err(ConditionError(format!("an operator must follow the attribute '{name}'")));
        };
        let (quantifier, comparison) = operator(&op)?;
        if comparison.on_guids() != attribute.is_guid() {
            return Err(ConditionError(format!(
                "the operator '{op}' does not apply to '{name}' ({} attribute)",
                if attribute.is_guid() { "a GUID" } else { "a string" }
            )));
        }
        let values = match self.next() {
            Some(Token::Set(values)) => values,
            Some(Token::Quoted(v) | Token::Word(v)) => vec![v],
            Some(t) => return Err(ConditionError(format!("expected a value after '{op}', found {t}"))),
            None => return Err(ConditionError(format!("expected a value after '{op}'"))),
        };
        if let Some(bad) =
            values.iter().find(|v| comparison.on_guids() && uuid::Uuid::parse_str(v.trim()).is_err())
        {
            return Err(ConditionError(format!("'{bad}' is not a GUID, which '{op}' compares")));
        }
        Ok(Expr::Compare { source, attribute, quantifier, comparison, values })
    }
}

fn attribute_named(name: &str) -> Result<Attribute, ConditionError> {
    let unsupported = || {
        ConditionError(format!(
            "the attribute '{name}' is not simulated; the simulator evaluates \
             Microsoft.Authorization/roleAssignments:RoleDefinitionId, :PrincipalId and :PrincipalType"
        ))
    };
    let (namespace, attr) = name.split_once(':').ok_or_else(unsupported)?;
    if !namespace.trim().eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments") {
        return Err(unsupported());
    }
    match attr.trim().to_ascii_lowercase().as_str() {
        "roledefinitionid" => Ok(Attribute::RoleDefinitionId),
        "principalid" => Ok(Attribute::PrincipalId),
        "principaltype" => Ok(Attribute::PrincipalType),
        _ => Err(unsupported()),
    }
}

fn operator(op: &str) -> Result<(Quantifier, Comparison), ConditionError> {
    let (quantifier, function) = match op.split_once(':') {
        None => (Quantifier::AnyOfAny, op),
        Some((q, f)) => {
            let quantifier = match q.to_ascii_lowercase().as_str() {
                "foranyofanyvalues" => Quantifier::AnyOfAny,
                "forallofanyvalues" => Quantifier::AllOfAny,
                "foranyofallvalues" => Quantifier::AnyOfAll,
                "forallofallvalues" => Quantifier::AllOfAll,
                _ => return Err(ConditionError(format!("the operator '{op}' is not simulated"))),
            };
            (quantifier, f)
        }
    };
    let comparison = match function.to_ascii_lowercase().as_str() {
        "guidequals" => Comparison::GuidEquals,
        "guidnotequals" => Comparison::GuidNotEquals,
        "stringequals" => Comparison::StringEquals,
        "stringequalsignorecase" => Comparison::StringEqualsIgnoreCase,
        "stringnotequals" => Comparison::StringNotEquals,
        "stringnotequalsignorecase" => Comparison::StringNotEqualsIgnoreCase,
        _ => {
            return Err(ConditionError(format!(
                "the operator '{op}' is not simulated; the simulator evaluates GuidEquals, GuidNotEquals, \
                 StringEquals[IgnoreCase] and StringNotEquals[IgnoreCase], bare or under ForAnyOfAnyValues, \
                 ForAllOfAnyValues, ForAnyOfAllValues or ForAllOfAllValues"
            )));
        }
    };
    Ok((quantifier, comparison))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
    const DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

    /// Microsoft's "Constrain roles and principal types" example with two roles and ServicePrincipal.
    fn delegation() -> String {
        format!(
            "((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] \
             ForAnyOfAnyValues:GuidEquals {{{SECRETS_USER}, {ACR_PULL}}} AND \
             @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase \
             {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'{DELETE}'}})) OR \
             (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals \
             {{{SECRETS_USER}, {ACR_PULL}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] \
             ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    }

    fn attrs(role: &str, principal_type: &str) -> Attributes {
        Attributes {
            role_definition_id: Some(role.into()),
            principal_id: Some("0b9e3c3e-1111-4a4a-8888-000000000001".into()),
            principal_type: Some(principal_type.into()),
        }
    }

    fn write(a: &Attributes) -> Context<'_> {
        Context { action: WRITE, request: Some(a), resource: None }
    }

    #[test]
    fn the_builder_writes_the_documented_example() {
        assert_eq!(delegation_condition(&[SECRETS_USER, ACR_PULL]), delegation());
    }

    #[test]
    fn the_delegation_example_allows_exactly_its_roles_and_principal_type() {
        let c = parse(&delegation()).expect("the documented form parses");
        let upper = ACR_PULL.to_uppercase();
        /// (action, role and principal type of the assignment written or deleted, allowed, why)
        type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, bool, &'a str);
        let cases: &[Case<'_>] = &[
            (WRITE, Some((SECRETS_USER, "ServicePrincipal")), true, "a listed role to a service principal"),
            (WRITE, Some((&upper, "serviceprincipal")), true, "GUIDs and types ignore case"),
            (WRITE, Some((OWNER, "ServicePrincipal")), false, "a role not listed"),
            (WRITE, Some((SECRETS_USER, "User")), false, "a user"),
            (WRITE, Some((SECRETS_USER, "Group")), false, "a group"),
            (DELETE, Some((SECRETS_USER, "ServicePrincipal")), true, "deleting a listed role's assignment"),
            (DELETE, Some((OWNER, "ServicePrincipal")), false, "deleting another role's assignment"),
            (DELETE, Some((SECRETS_USER, "User")), false, "deleting a user's assignment"),
            (
                "Microsoft.Authorization/roleAssignments/read",
                None,
                true,
                "reading: neither action is targeted",
            ),
            ("Microsoft.KeyVault/vaults/read", None, true, "another action the role grants"),
        ];
        for (action, assignment, want, why) in cases {
            let a = assignment.map(|(role, kind)| attrs(role, kind));
            let cx = match *action {
                WRITE => Context { action, request: a.as_ref(), resource: None },
                DELETE => Context { action, request: None, resource: a.as_ref() },
                _ => Context { action, request: None, resource: None },
            };
            assert_eq!(c.allows(&cx), *want, "{why}");
        }
    }

    #[test]
    fn missing_attributes_never_allow() {
        let c = parse(&delegation()).expect("parses");
        // A write whose body names no principal type: unknown, so not allowed.
        let a = Attributes { principal_type: None, ..attrs(SECRETS_USER, "") };
        assert!(!c.allows(&write(&a)));
        // A write evaluated without request attributes at all.
        assert!(!c.allows(&Context { action: WRITE, request: None, resource: None }));
        // Unknown OR true is true, whatever the order.
        let reversed = parse(&format!(
            "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {SECRETS_USER}) OR \
             (!(ActionMatches{{'{WRITE}'}}))"
        ))
        .expect("parses");
        assert!(reversed.allows(&Context { action: DELETE, request: None, resource: None }));
        assert!(!reversed.allows(&Context { action: WRITE, request: None, resource: None }));
    }

    #[test]
    fn exclusion_and_quantifiers() {
        // "Allow most roles, but don't allow others to assign roles".
        let c = parse(&format!(
            "((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] \
             ForAnyOfAllValues:GuidNotEquals {{{OWNER}, f58310d9-a9f6-439a-9e8d-f62e7b41a168}}))"
        ))
        .expect("parses");
        assert!(c.allows(&write(&attrs(SECRETS_USER, "User"))));
        assert!(!c.allows(&write(&attrs(OWNER, "ServicePrincipal"))));
        // Specific principals, bare operator, `&&`/`||`/`NOT` spellings.
        let p = parse(&format!(
            "NOT ActionMatches{{'{WRITE}'}} || (@Request[Microsoft.Authorization/roleAssignments:PrincipalId] \
             GuidEquals '0b9e3c3e-1111-4a4a-8888-000000000001' && \
             @Request[Microsoft.Authorization/roleAssignments:PrincipalType] stringEquals 'ServicePrincipal')"
        ))
        .expect("parses");
        assert!(p.allows(&write(&attrs(OWNER, "ServicePrincipal"))));
        assert!(!p.allows(&write(&attrs(OWNER, "serviceprincipal"))), "StringEquals is case-sensitive");
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused() {
        let refused = [
            ("", "empty"),
            (
                "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEquals 'x'",
                "a Storage attribute",
            ),
            (
                "@Principal[Microsoft.Directory/CustomSecurityAttributes/Id:Engineering_Project] StringEquals 'x'",
                "a principal attribute",
            ),
            (
                "(!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'} AND \
                 @Request[subOperation] ForAnyOfAnyValues:StringEqualsIgnoreCase {'Blob.List'}))",
                "a sub-operation",
            ),
            (
                "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringLike 'Service*'",
                "StringLike",
            ),
            (
                "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] GuidEquals {'User'}",
                "a GUID operator on a string",
            ),
            (
                "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {not-a-guid}",
                "a value that is no GUID",
            ),
            ("!(ActionMatches{'a'}) OR !(ActionMatches{'b'}) AND !(ActionMatches{'c'})", "AND and OR mixed"),
            ("((!(ActionMatches{'a'}))", "an unclosed parenthesis"),
            ("!(ActionMatches{'a'})) OR x", "trailing text"),
            ("ActionMatches{'a', 'b'}", "two patterns"),
            (
                "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForSomeValues:GuidEquals {x}",
                "an unknown quantifier",
            ),
        ];
        for (text, why) in refused {
            assert!(parse(text).is_err(), "{why} was accepted: {text}");
        }
        let ok = delegation();
        assert!(parse_versioned(&ok, Some("2.0")).is_ok());
        assert!(parse_versioned(&ok, None).is_ok());
        let e = parse_versioned(&ok, Some("1.0")).expect_err("version 1.0");
        assert!(e.0.contains("1.0"), "{e}");
        assert!(parse_versioned(&"(".repeat(MAX_CONDITION_LEN + 1), Some("2.0")).is_err());
    }
}
