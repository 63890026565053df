//! The subset of the POSIX shell that build systems put in recorded
//! commands: words with quotes and backslash escapes, joined by `&&`.
//! Nothing here is ever run by a shell; what this subset cannot express
//! faithfully (expansions, redirections, pipes, other operators) is an
//! [`Unsupported`] error, so the entry is reported and left out.

/// Why a command string is outside the subset the importer accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// Splits `text` into words as a POSIX shell would (quotes, backslash
/// escapes, no expansion), and then into the `&&`-joined commands.
pub fn split_chain(text: &str) -> Result<Vec<Vec<String>>, Unsupported> {
    let mut chain = vec![Vec::new()];
    for token in tokens(text)? {
        match token {
            Token::Word(word) => {
                if let Some(last) = chain.last_mut() {
                    last.push(word);
                }
            }
            Token::And => {
                if chain.last().is_some_and(Vec::is_empty) {
                    return Err(Unsupported("`&&` with no command before it".into()));
                }
                chain.push(Vec::new());
            }
        }
    }
    if chain.last().is_some_and(Vec::is_empty) && chain.len() > 1 {
        return Err(Unsupported("`&&` with no command after it".into()));
    }
    Ok(chain.into_iter().filter(|c| !c.is_empty()).collect())
}

/// Splits `text` into words as a POSIX shell would; an operator of any kind
/// (even `&&`) is unsupported here.
pub fn split_words(text: &str) -> Result<Vec<String>, Unsupported> {
    let mut chain = split_chain(text)?;
    if chain.len() > 1 {
        return Err(Unsupported("a chain of commands (`&&`)".into()));
    }
    Ok(chain.pop().unwrap_or_default())
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    And,
}

/// Characters that start an operator or a redirection outside quotes.
const OPERATORS: &[char] = &['|', ';', '<', '>', '(', ')'];

fn tokens(text: &str) -> Result<Vec<Token>, Unsupported> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    out.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                // A line continuation joins the lines.
                Some('\n') => {}
                Some(escaped) => {
                    word.push(escaped);
                    in_word = true;
                }
                None => return Err(Unsupported("a backslash at the end of the command".into())),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(Unsupported("an unterminated `'` quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('$' | '`' | '"' | '\\')) => word.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => {
                                return Err(Unsupported("an unterminated `\"` quote".into()))
                            }
                        },
                        Some(e @ ('$' | '`')) => {
                            return Err(Unsupported(format!(
                                "a shell expansion (`{e}`) inside double quotes"
                            )))
                        }
                        Some(ch) => word.push(ch),
                        None => return Err(Unsupported("an unterminated `\"` quote".into())),
                    }
                }
            }
            '&' => {
                if chars.peek() == Some(&'&') {
                    chars.next();
                    if in_word {
                        out.push(Token::Word(std::mem::take(&mut word)));
                        in_word = false;
                    }
                    out.push(Token::And);
                } else {
                    return Err(Unsupported("a background job (`&`)".into()));
                }
            }
            c if OPERATORS.contains(&c) => {
                return Err(Unsupported(format!(
                    "the shell operator `{c}` (pipes, lists, redirections and subshells are not imported)"
                )))
            }
            '$' | '`' => {
                return Err(Unsupported(format!("a shell expansion (`{c}`)")));
            }
            '*' | '?' | '[' => {
                return Err(Unsupported(format!("a glob pattern (`{c}`)")));
            }
            '~' | '#' if !in_word => {
                return Err(Unsupported(format!(
                    "`{c}` at the start of a word (home directory or comment)"
                )));
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(Token::Word(word));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split_words(text).unwrap()
    }

    #[test]
    fn quotes_and_escapes_split_as_a_shell_would() {
        assert_eq!(
            words(r#"clang -DNAME="\"a b\"" -DX='it'\''s' a\ b.c "" -o 'o u t.o'"#),
            vec![
                "clang",
                "-DNAME=\"a b\"",
                "-DX=it's",
                "a b.c",
                "",
                "-o",
                "o u t.o"
            ]
        );
        assert_eq!(words("cc \\\n  -c x.c"), vec!["cc", "-c", "x.c"]);
        assert_eq!(
            words(r#"cc "-DP=\\path" "-DQ=\x""#),
            vec!["cc", r"-DP=\path", r"-DQ=\x"]
        );
    }

    #[test]
    fn chains_split_on_and_only() {
        let chain = split_chain(": && clang a.o -o p && :").unwrap();
        assert_eq!(
            chain,
            vec![vec![":"], vec!["clang", "a.o", "-o", "p"], vec![":"]]
        );
        assert_eq!(split_chain("a&&b").unwrap(), vec![vec!["a"], vec!["b"]]);
        assert_eq!(
            split_chain("cc '&&' x").unwrap(),
            vec![vec!["cc", "&&", "x"]]
        );
    }

    #[test]
    fn anything_else_is_unsupported() {
        for text in [
            "cc x.c | tee log",
            "cc x.c; rm -rf /",
            "cc x.c > out",
            "cc $(evil)",
            "cc `evil`",
            "cc \"$HOME\"",
            "cc x.c || true",
            "cc x.c &",
            "cc *.c",
            "cc ~/x.c",
            "cc 'unterminated",
            "&& cc",
            "cc &&",
        ] {
            assert!(split_chain(text).is_err(), "{text}");
        }
    }
}
