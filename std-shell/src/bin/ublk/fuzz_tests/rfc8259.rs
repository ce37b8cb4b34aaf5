//! The oracle of the JSON tests: a validator written from RFC 8259's grammar, not from the
//! parser.

/// The parser's documented nesting limit: a value nested deeper than this is refused.
pub(super) const MAX_DEPTH: usize = 64;

/// An RFC 8259 validator, iterative (an explicit stack, so its own depth is unbounded),
/// with the two rules this parser adds: strings must decode to Unicode (a `\u` high
/// surrogate pairs with a low one; a lone surrogate is refused), and a value may be nested
/// at most `MAX_DEPTH` containers deep.
pub(super) fn is_json(text: &str) -> bool {
    let b = text.as_bytes();
    let mut at = 0;
    // The open containers, innermost last: b'[' or b'{'.
    let mut open: Vec<u8> = Vec::new();
    'value: loop {
        // A value at depth `open.len()`.
        space(b, &mut at);
        if open.len() > MAX_DEPTH {
            return false;
        }
        match b.get(at) {
            Some(b'[') => {
                at += 1;
                space(b, &mut at);
                if b.get(at) == Some(&b']') {
                    at += 1;
                } else {
                    open.push(b'[');
                    continue 'value;
                }
            }
            Some(b'{') => {
                at += 1;
                space(b, &mut at);
                if b.get(at) == Some(&b'}') {
                    at += 1;
                } else {
                    open.push(b'{');
                    if !member_key(b, &mut at) {
                        return false;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => {
                if !string(b, &mut at) {
                    return false;
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                if !number(b, &mut at) {
                    return false;
                }
            }
            _ => {
                let word = ["true", "false", "null"]
                    .into_iter()
                    .find(|w| b[at..].starts_with(w.as_bytes()));
                match word {
                    Some(w) => at += w.len(),
                    None => return false,
                }
            }
        }
        // A value ended: close containers until another value is due.
        loop {
            space(b, &mut at);
            let Some(&kind) = open.last() else {
                return at == b.len();
            };
            let close = if kind == b'[' { b']' } else { b'}' };
            match b.get(at) {
                Some(b',') => {
                    at += 1;
                    if kind == b'{' && !member_key(b, &mut at) {
                        return false;
                    }
                    continue 'value;
                }
                Some(&c) if c == close => {
                    at += 1;
                    open.pop();
                }
                _ => return false,
            }
        }
    }
}

/// JSON whitespace: space, tab, line feed, carriage return.
fn space(b: &[u8], at: &mut usize) {
    while matches!(b.get(*at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        *at += 1;
    }
}

/// `string ws ':'` before a member's value.
fn member_key(b: &[u8], at: &mut usize) -> bool {
    space(b, at);
    if !string(b, at) {
        return false;
    }
    space(b, at);
    if b.get(*at) != Some(&b':') {
        return false;
    }
    *at += 1;
    true
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], at: &mut usize) -> bool {
    let digits = |at: &mut usize| {
        let from = *at;
        while b.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at > from
    };
    if b.get(*at) == Some(&b'-') {
        *at += 1;
    }
    match b.get(*at) {
        Some(b'0') => *at += 1,
        Some(b'1'..=b'9') => {
            digits(at);
        }
        _ => return false,
    }
    if b.get(*at) == Some(&b'.') {
        *at += 1;
        if !digits(at) {
            return false;
        }
    }
    if matches!(b.get(*at), Some(b'e' | b'E')) {
        *at += 1;
        if matches!(b.get(*at), Some(b'+' | b'-')) {
            *at += 1;
        }
        if !digits(at) {
            return false;
        }
    }
    true
}

/// Exactly four hex digits, as a code unit.
fn hex4(b: &[u8], at: &mut usize) -> Option<u32> {
    let h = b.get(*at..*at + 4)?;
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    *at += 4;
    h.iter()
        .try_fold(0, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

/// A string: no raw control characters, only the RFC's escapes, surrogates in pairs.
fn string(b: &[u8], at: &mut usize) -> bool {
    if b.get(*at) != Some(&b'"') {
        return false;
    }
    *at += 1;
    loop {
        match b.get(*at) {
            None => return false,
            Some(b'"') => {
                *at += 1;
                return true;
            }
            Some(b'\\') => {
                *at += 1;
                match b.get(*at) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *at += 1,
                    Some(b'u') => {
                        *at += 1;
                        let Some(unit) = hex4(b, at) else {
                            return false;
                        };
                        if (0xdc00..0xe000).contains(&unit) {
                            return false;
                        }
                        if (0xd800..0xdc00).contains(&unit) {
                            if b.get(*at..*at + 2) != Some(b"\\u") {
                                return false;
                            }
                            *at += 2;
                            if !hex4(b, at).is_some_and(|low| (0xdc00..0xe000).contains(&low)) {
                                return false;
                            }
                        }
                    }
                    _ => return false,
                }
            }
            Some(0..=0x1f) => return false,
            Some(_) => *at += 1,
        }
    }
}
