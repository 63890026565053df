//! From what the executor has in hand to a REAPI v2 `Action` digest.

use std::collections::BTreeMap;

use crate::reapi::{
    Action, Command, Digest, Directory, DirectoryNode, EnvironmentVariable, FileNode, Platform,
    Property,
};

/// The cache format version, carried in every `Action`'s salt: bumping it
/// makes every earlier key unreachable.
pub const FORMAT_VERSION: u32 = 1;

/// The root-level directory of the input tree that holds inputs named by
/// an absolute path (system headers, libraries): `/usr/lib/x.a` is
/// `.replay-system/usr/lib/x.a`.
pub const SYSTEM_DIR: &str = ".replay-system";

/// The root-level file of the input tree that stands for the tool's
/// canonical binary.
pub const PROGRAM_FILE: &str = ".replay-program";

/// One declared input of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Relative to the work root, or absolute for a file outside it.
    pub path: String,
    /// Its content digest (see [`crate::DigestMemo`]).
    pub digest: Digest,
    /// Whether it is executable.
    pub executable: bool,
}

/// Everything a command's result depends on, as the executor knows it
/// before running it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ActionSpec {
    /// The content digest of the canonical binary that runs.
    pub program_digest: Digest,
    /// `argv[0]` as logged, then the arguments after response-file
    /// expansion, as declared (never the staged output paths).
    pub argv: Vec<String>,
    /// The whole environment the tool gets.
    pub env: BTreeMap<String, String>,
    /// The working directory, relative to the work root (`.` for the root).
    pub cwd: String,
    /// Platform properties (`OSFamily`, `ISA`, a target triple ...); see
    /// [`host_platform`].
    pub platform: Vec<(String, String)>,
    /// The declared inputs.
    pub inputs: Vec<InputFile>,
    /// The declared outputs, relative to the work root. (REAPI has output
    /// paths relative to the working directory; the key does not care, but
    /// a remote executor, not just a remote cache, would need them
    /// rebased when `cwd` is not the root.)
    pub outputs: Vec<String>,
}

/// A command's key, and the messages it was made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionKey {
    /// The digest of the encoded `Action`: the key.
    pub action: Digest,
    /// The `Command`, `Action` and every `Directory` message, encoded, by
    /// digest: what a remote cache needs uploaded besides the inputs.
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

impl ActionKey {
    /// The same action with the platform property `name` = `value` added
    /// to its `Action`'s and its `Command`'s platform (sorted, replacing
    /// a property of that name): a scheduling hint for a build farm
    /// (`memory_kb`), which makes another digest. `None` if this key's own
    /// messages are not among its blobs or do not decode.
    pub fn with_property(&self, name: &str, value: &str) -> Option<ActionKey> {
        use prost::Message as _;
        let blob = |digest: &Digest| {
            self.blobs
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, bytes)| bytes.as_slice())
        };
        let mut action = Action::decode(blob(&self.action)?).ok()?;
        let command_digest = action.command_digest.clone()?;
        let mut command = Command::decode(blob(&command_digest)?).ok()?;
        let add = |platform: &mut Option<Platform>| {
            let platform = platform.get_or_insert_with(Platform::default);
            platform.properties.retain(|p| p.name != name);
            platform.properties.push(Property {
                name: name.to_owned(),
                value: value.to_owned(),
            });
            platform
                .properties
                .sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        };
        add(&mut command.platform);
        add(&mut action.platform);
        let (new_command, command_bytes) = Digest::of_message(&command);
        action.command_digest = Some(new_command.clone());
        let (new_action, action_bytes) = Digest::of_message(&action);
        let mut blobs: Vec<(Digest, Vec<u8>)> = self
            .blobs
            .iter()
            .filter(|(d, _)| *d != self.action && *d != command_digest)
            .cloned()
            .collect();
        blobs.push((new_command, command_bytes));
        blobs.push((new_action.clone(), action_bytes));
        Some(ActionKey {
            action: new_action,
            blobs,
        })
    }
}

/// Why no key could be made for a spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// A path is empty or climbs out with `..`.
    #[error("the path `{path}` cannot be keyed: {reason}; declare it as a plain path inside the work root or as an absolute path")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two inputs claim one place in the tree with different contents, or
    /// one is a file where another needs a directory.
    #[error(
        "the input `{path}` conflicts with another input at the same place; declare each file once"
    )]
    Conflict {
        /// The input.
        path: String,
    },
    /// A work-root input lies where the tree keeps system inputs or the
    /// program.
    #[error(
        "the input `{path}` lies under `{}` or is `{}`, which the cache keeps for itself",
        SYSTEM_DIR,
        PROGRAM_FILE
    )]
    Reserved {
        /// The input.
        path: String,
    },
}

/// The host's properties: `OSFamily` and `ISA` as Rust names them.
pub fn host_platform() -> Vec<(String, String)> {
    vec![
        ("OSFamily".to_owned(), std::env::consts::OS.to_owned()),
        ("ISA".to_owned(), std::env::consts::ARCH.to_owned()),
    ]
}

/// Splits a path into its segments, dropping empty and `.` ones.
fn segments<'a>(original: &str, path: &'a str) -> Result<Vec<&'a str>, KeyError> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(KeyError::BadPath {
            path: original.to_owned(),
            reason: "it contains `..`",
        });
    }
    Ok(parts)
}

/// A relative path in canonical form (`./a//b` is `a/b`; `.` is ``).
fn normal_relative(path: &str) -> Result<String, KeyError> {
    if path.starts_with('/') {
        return Err(KeyError::BadPath {
            path: path.to_owned(),
            reason: "it is absolute",
        });
    }
    Ok(segments(path, path)?.join("/"))
}

/// A node of the input tree while it is built.
enum Node {
    File(Digest, bool),
    Dir(BTreeMap<String, Node>),
}

fn insert(
    root: &mut BTreeMap<String, Node>,
    parts: &[&str],
    digest: &Digest,
    executable: bool,
    original: &str,
) -> Result<(), KeyError> {
    let conflict = || KeyError::Conflict {
        path: original.to_owned(),
    };
    let Some((last, dirs)) = parts.split_last() else {
        return Err(KeyError::BadPath {
            path: original.to_owned(),
            reason: "it names no file",
        });
    };
    let mut here = root;
    for dir in dirs {
        let next = here
            .entry((*dir).to_owned())
            .or_insert_with(|| Node::Dir(BTreeMap::new()));
        here = match next {
            Node::Dir(children) => children,
            Node::File(..) => return Err(conflict()),
        };
    }
    match here.get(*last) {
        None => {
            here.insert((*last).to_owned(), Node::File(digest.clone(), executable));
            Ok(())
        }
        Some(Node::File(d, x)) if d == digest && *x == executable => Ok(()),
        Some(_) => Err(conflict()),
    }
}

/// Encodes a directory and, first, its subdirectories; returns its digest.
fn encode_dir(children: &BTreeMap<String, Node>, blobs: &mut Vec<(Digest, Vec<u8>)>) -> Digest {
    let mut message = Directory::default();
    // A BTreeMap<String, _> iterates by byte order: REAPI's order.
    for (name, node) in children {
        match node {
            Node::File(digest, executable) => message.files.push(FileNode {
                name: name.clone(),
                digest: Some(digest.clone()),
                is_executable: *executable,
            }),
            Node::Dir(grandchildren) => {
                let digest = encode_dir(grandchildren, blobs);
                message.directories.push(DirectoryNode {
                    name: name.clone(),
                    digest: Some(digest),
                });
            }
        }
    }
    let (digest, bytes) = Digest::of_message(&message);
    if !blobs.iter().any(|(d, _)| *d == digest) {
        blobs.push((digest.clone(), bytes));
    }
    digest
}

impl ActionSpec {
    /// Makes the key: a canonical input tree (work-root inputs by relative
    /// path, absolute inputs under [`SYSTEM_DIR`], the program as
    /// [`PROGRAM_FILE`]), a `Command` (argv, sorted environment, working
    /// directory, sorted outputs, platform) and the `Action` over both,
    /// salted with [`FORMAT_VERSION`].
    pub fn key(&self) -> Result<ActionKey, KeyError> {
        let mut blobs = Vec::new();
        let mut tree = BTreeMap::new();
        insert(
            &mut tree,
            &[PROGRAM_FILE],
            &self.program_digest,
            true,
            PROGRAM_FILE,
        )?;
        for input in &self.inputs {
            let parts = match input.path.strip_prefix('/') {
                Some(absolute) => {
                    let mut parts = vec![SYSTEM_DIR];
                    parts.extend(segments(&input.path, absolute)?);
                    parts
                }
                None => {
                    let parts = segments(&input.path, &input.path)?;
                    if matches!(parts.first(), Some(&SYSTEM_DIR) | Some(&PROGRAM_FILE)) {
                        return Err(KeyError::Reserved {
                            path: input.path.clone(),
                        });
                    }
                    parts
                }
            };
            if parts.len() < 2 && parts.first() == Some(&SYSTEM_DIR) {
                return Err(KeyError::BadPath {
                    path: input.path.clone(),
                    reason: "it names no file",
                });
            }
            insert(
                &mut tree,
                &parts,
                &input.digest,
                input.executable,
                &input.path,
            )?;
        }
        let input_root = encode_dir(&tree, &mut blobs);

        let mut properties: Vec<Property> = self
            .platform
            .iter()
            .map(|(name, value)| Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        properties.dedup();
        let platform = Platform { properties };

        let mut output_paths = self
            .outputs
            .iter()
            .map(|o| normal_relative(o))
            .collect::<Result<Vec<_>, _>>()?;
        output_paths.sort();
        output_paths.dedup();
        if let Some(empty) = self
            .outputs
            .iter()
            .find(|o| normal_relative(o).map(|n| n.is_empty()).unwrap_or(false))
        {
            return Err(KeyError::BadPath {
                path: empty.clone(),
                reason: "it names no file",
            });
        }

        let command = Command {
            arguments: self.argv.clone(),
            environment_variables: self
                .env
                .iter()
                .map(|(name, value)| EnvironmentVariable {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            platform: Some(platform.clone()),
            working_directory: normal_relative(&self.cwd)?,
            output_paths,
        };
        let (command_digest, command_bytes) = Digest::of_message(&command);
        blobs.push((command_digest.clone(), command_bytes));

        let action = Action {
            command_digest: Some(command_digest),
            input_root_digest: Some(input_root),
            do_not_cache: false,
            salt: format!("replay-cache/{FORMAT_VERSION}").into_bytes(),
            platform: Some(platform),
        };
        let (action_digest, action_bytes) = Digest::of_message(&action);
        blobs.push((action_digest.clone(), action_bytes));
        Ok(ActionKey {
            action: action_digest,
            blobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> ActionSpec {
        ActionSpec {
            program_digest: Digest::of(b"clang"),
            argv: vec![
                "clang".into(),
                "-c".into(),
                "a.c".into(),
                "-o".into(),
                "a.o".into(),
            ],
            env: BTreeMap::from([("LANG".into(), "C".into()), ("PATH".into(), "/bin".into())]),
            cwd: ".".into(),
            platform: host_platform(),
            inputs: vec![
                InputFile {
                    path: "src/a.c".into(),
                    digest: Digest::of(b"int a;"),
                    executable: false,
                },
                InputFile {
                    path: "/usr/include/stdio.h".into(),
                    digest: Digest::of(b"stdio"),
                    executable: false,
                },
            ],
            outputs: vec!["a.o".into()],
        }
    }

    fn key(spec: &ActionSpec) -> Digest {
        spec.key().expect("key").action
    }

    #[test]
    fn a_property_added_for_the_farm_is_in_both_platforms_and_makes_another_key() {
        use prost::Message as _;
        let base = spec().key().expect("key");
        let hinted = base.with_property("memory_kb", "2048").expect("hinted");
        assert_ne!(hinted.action, base.action);
        let blob = |key: &ActionKey, digest: &Digest| {
            key.blobs
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, b)| b.clone())
                .expect("blob")
        };
        let action = Action::decode(blob(&hinted, &hinted.action).as_slice()).expect("action");
        let command_digest = action.command_digest.clone().expect("command digest");
        let command = Command::decode(blob(&hinted, &command_digest).as_slice()).expect("command");
        for platform in [action.platform.as_ref(), command.platform.as_ref()] {
            let properties = &platform.expect("platform").properties;
            let memory: Vec<&str> = properties
                .iter()
                .filter(|p| p.name == "memory_kb")
                .map(|p| p.value.as_str())
                .collect();
            assert_eq!(memory, ["2048"]);
            let mut sorted = properties.clone();
            sorted.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
            assert_eq!(&sorted, properties);
        }
        // The rest of the action is the same: the old key's platform
        // plus the hint, the same input root; no stale message is kept.
        let old = Action::decode(blob(&base, &base.action).as_slice()).expect("old action");
        assert_eq!(old.input_root_digest, action.input_root_digest);
        assert!(!hinted.blobs.iter().any(|(d, _)| *d == base.action));
        assert_eq!(hinted.blobs.len(), base.blobs.len());
        // Given again, the property replaces its old value.
        let again = hinted.with_property("memory_kb", "2048").expect("again");
        assert_eq!(again.action, hinted.action);
    }

    #[test]
    fn same_spec_same_key_and_order_does_not_matter() {
        let a = spec();
        let mut b = spec();
        b.inputs.reverse();
        b.platform.reverse();
        assert_eq!(key(&a), key(&b));
        let mut c = spec();
        c.inputs[0].path = "./src//a.c".into();
        c.cwd = "".into();
        assert_eq!(key(&a), key(&c));
    }

    #[test]
    fn every_covered_field_changes_the_key() {
        let base = key(&spec());
        type Change = Box<dyn Fn(&mut ActionSpec)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "program",
                Box::new(|s| s.program_digest = Digest::of(b"clang2")),
            ),
            ("argv", Box::new(|s| s.argv[1] = "-S".into())),
            ("argv0", Box::new(|s| s.argv[0] = "clang-14".into())),
            (
                "env value",
                Box::new(|s| {
                    s.env.insert("LANG".into(), "fr".into());
                }),
            ),
            (
                "env added",
                Box::new(|s| {
                    s.env.insert("X".into(), String::new());
                }),
            ),
            ("cwd", Box::new(|s| s.cwd = "src".into())),
            (
                "platform",
                Box::new(|s| {
                    s.platform
                        .push(("triple".into(), "x86_64-linux-gnu".into()))
                }),
            ),
            (
                "input digest",
                Box::new(|s| s.inputs[0].digest = Digest::of(b"int b;")),
            ),
            (
                "input path",
                Box::new(|s| s.inputs[0].path = "src/b.c".into()),
            ),
            ("input exec", Box::new(|s| s.inputs[0].executable = true)),
            (
                "system input digest",
                Box::new(|s| s.inputs[1].digest = Digest::of(b"x")),
            ),
            (
                "system input path",
                Box::new(|s| s.inputs[1].path = "/usr/include/stdlib.h".into()),
            ),
            (
                "input added",
                Box::new(|s| {
                    s.inputs.push(InputFile {
                        path: "b.h".into(),
                        digest: Digest::of(b""),
                        executable: false,
                    })
                }),
            ),
            ("outputs", Box::new(|s| s.outputs.push("a.d".into()))),
        ];
        for (what, change) in changes {
            let mut s = spec();
            change(&mut s);
            assert_ne!(key(&s), base, "{what} did not change the key");
        }
    }

    #[test]
    fn system_and_relative_inputs_do_not_collide() {
        let mut a = spec();
        a.inputs[1].path = "/usr/x.h".into();
        let mut b = spec();
        b.inputs[1].path = "usr/x.h".into();
        assert_ne!(key(&a), key(&b));
        let mut c = spec();
        c.inputs[1].path = ".replay-system/usr/x.h".into();
        assert!(matches!(c.key(), Err(KeyError::Reserved { .. })));
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut s = spec();
        s.inputs[0].path = "../a.c".into();
        assert!(matches!(s.key(), Err(KeyError::BadPath { .. })));
        let mut s = spec();
        s.inputs.push(InputFile {
            path: "src".into(),
            digest: Digest::of(b""),
            executable: false,
        });
        assert!(matches!(s.key(), Err(KeyError::Conflict { .. })));
        let mut s = spec();
        s.outputs.push("/abs.o".into());
        assert!(matches!(s.key(), Err(KeyError::BadPath { .. })));
    }

    #[test]
    fn blobs_hold_the_messages_by_their_digest() {
        let key = spec().key().expect("key");
        for (digest, bytes) in &key.blobs {
            assert_eq!(*digest, Digest::of(bytes));
        }
        assert_eq!(key.blobs.last().map(|(d, _)| d), Some(&key.action));
        // Root, `src`, `.replay-system`, `usr`, `include`; Command; Action.
        assert_eq!(key.blobs.len(), 7);
    }

    proptest! {
        #[test]
        fn argv_and_env_changes_change_the_key(
            argv in proptest::collection::vec("[a-z=-]{0,6}", 1..5),
            other in proptest::collection::vec("[a-z=-]{0,6}", 1..5),
            name in "[A-Z]{1,4}", value in "[a-z]{0,4}",
        ) {
            let mut a = spec();
            a.argv = argv.clone();
            let mut b = spec();
            b.argv = other.clone();
            prop_assert_eq!(argv == other, key(&a) == key(&b));
            let mut c = spec();
            c.env.insert(name, value);
            prop_assert_ne!(key(&c), key(&spec()));
        }
    }
}
