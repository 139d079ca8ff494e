//! Takes the TLS parameters rse reads itself out of a PostgreSQL connection string.
//!
//! tokio-postgres knows `sslmode` as `disable`/`prefer`/`require` only and refuses
//! `sslrootcert`, `sslcert` and `sslkey`, so these are removed before it parses the rest.

/// The parameters taken out of a connection string, as written there.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SslParams {
    pub(crate) mode: Option<String>,
    pub(crate) root_cert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

impl SslParams {
    fn set(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// The connection string without the parameters of [`SslParams`], and their values. A URL
/// (`postgres://…?sslmode=verify-full`) and a `key=value` string are both understood; a
/// string neither reads as is returned whole, for tokio-postgres to say what is wrong.
///
/// # Errors
/// The name of a parameter whose percent-encoding is broken (never its value: the string
/// may hold a password).
pub(crate) fn split(conn: &str) -> Result<(String, SslParams), String> {
    let mut params = SslParams::default();
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else { return Ok((conn.to_owned(), params)) };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key_text = percent_decode(key).unwrap_or_default();
            if matches!(key_text.as_str(), "sslmode" | "sslrootcert" | "sslcert" | "sslkey") {
                let value = percent_decode(value)
                    .ok_or_else(|| format!("the value of `{key_text}` is not valid percent-encoded UTF-8"))?;
                params.set(&key_text, value);
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, params));
    }
    match split_key_values(conn, &mut params) {
        Some(rest) => Ok((rest, params)),
        None => Ok((conn.to_owned(), SslParams::default())),
    }
}

/// `key=value` pairs separated by whitespace; a value may be single-quoted, and `\` escapes
/// the next character. `None` when the string does not read so.
fn split_key_values(conn: &str, params: &mut SslParams) -> Option<String> {
    let mut kept = String::with_capacity(conn.len());
    let mut chars = conn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=')?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next()? {
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, '\'') => break,
                    (_, c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?.1);
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.peek().map_or(conn.len(), |&(i, _)| i);
        if !params.set(&key, value) {
            kept.push_str(&conn[start..end]);
            kept.push(' ');
        }
    }
    Some(kept.trim_end().to_owned())
}

/// Decodes `%XX` escapes (and nothing else: a URL query's `+` stays a `+`, as libpq reads it).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
