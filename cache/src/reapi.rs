//! The Remote Execution API v2 messages the key is made of, mirrored by
//! hand with the field numbers of
//! `build/bazel/remote/execution/v2/remote_execution.proto` (bazelbuild/
//! remote-apis), so that the bytes hashed here are the bytes a REAPI
//! server (BuildGrid, ...) would hash. Only the fields `replay` sets are
//! declared; proto3 skips fields at their default value, so an omitted
//! field and an unset one encode alike. Fields are declared in tag order,
//! the order the API requires them on the wire.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A content digest: lowercase hex SHA-256 and size (`message Digest`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, prost::Message)]
pub struct Digest {
    /// `string hash = 1;` lowercase hex, 64 digits for SHA-256.
    #[prost(string, tag = "1")]
    pub hash: String,
    /// `int64 size_bytes = 2;` the blob's size.
    #[prost(int64, tag = "2")]
    pub size_bytes: i64,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hash: hex(&Sha256::digest(bytes)),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        }
    }

    /// The digest of a message's canonical encoding, and the encoding.
    pub fn of_message<M: prost::Message>(message: &M) -> (Digest, Vec<u8>) {
        let bytes = message.encode_to_vec();
        (Digest::of(&bytes), bytes)
    }

    /// Whether the hash is 64 lowercase hex digits and the size is not
    /// negative: the only digests the store turns into file names.
    pub fn is_well_formed(&self) -> bool {
        self.hash.len() == 64
            && self
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && self.size_bytes >= 0
    }

    /// The size as `u64` (0 for a malformed negative size).
    pub fn size(&self) -> u64 {
        u64::try_from(self.size_bytes).unwrap_or(0)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hash, self.size_bytes)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// `message Command.EnvironmentVariable`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EnvironmentVariable {
    /// `string name = 1;`
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string value = 2;`
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `message Platform.Property`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Property {
    /// `string name = 1;`
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string value = 2;`
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `message Platform`: properties sorted by name, then value.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Platform {
    /// `repeated Property properties = 1;`
    #[prost(message, repeated, tag = "1")]
    pub properties: Vec<Property>,
}

/// `message Command`: what runs, in what environment, making what.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Command {
    /// `repeated string arguments = 1;`
    #[prost(string, repeated, tag = "1")]
    pub arguments: Vec<String>,
    /// `repeated EnvironmentVariable environment_variables = 2;` sorted by
    /// name.
    #[prost(message, repeated, tag = "2")]
    pub environment_variables: Vec<EnvironmentVariable>,
    /// `Platform platform = 5 [deprecated];` still set, as v2.2 asks
    /// clients to set it both here and in the `Action`.
    #[prost(message, optional, tag = "5")]
    pub platform: Option<Platform>,
    /// `string working_directory = 6;` relative to the input root.
    #[prost(string, tag = "6")]
    pub working_directory: String,
    /// `repeated string output_paths = 7;` deduplicated and sorted.
    #[prost(string, repeated, tag = "7")]
    pub output_paths: Vec<String>,
}

/// `message Action`: the key's message; its digest is the cache key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Action {
    /// `Digest command_digest = 1;`
    #[prost(message, optional, tag = "1")]
    pub command_digest: Option<Digest>,
    /// `Digest input_root_digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub input_root_digest: Option<Digest>,
    /// `bool do_not_cache = 7;`
    #[prost(bool, tag = "7")]
    pub do_not_cache: bool,
    /// `bytes salt = 9;` here: the cache format version.
    #[prost(bytes = "vec", tag = "9")]
    pub salt: Vec<u8>,
    /// `Platform platform = 10;`
    #[prost(message, optional, tag = "10")]
    pub platform: Option<Platform>,
}

/// `message FileNode`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileNode {
    /// `string name = 1;` one path segment.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `Digest digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
    /// `bool is_executable = 4;` (3 is reserved).
    #[prost(bool, tag = "4")]
    pub is_executable: bool,
}

/// `message DirectoryNode`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DirectoryNode {
    /// `string name = 1;` one path segment.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `Digest digest = 2;` of the child `Directory` message.
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
}

/// `message Directory`: children sorted by name, each name once.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Directory {
    /// `repeated FileNode files = 1;`
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<FileNode>,
    /// `repeated DirectoryNode directories = 2;`
    #[prost(message, repeated, tag = "2")]
    pub directories: Vec<DirectoryNode>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn empty_directory_is_the_digest_of_no_bytes() {
        let (digest, bytes) = Digest::of_message(&Directory::default());
        assert!(bytes.is_empty());
        assert_eq!(
            digest.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest.size_bytes, 0);
    }

    #[test]
    fn command_encodes_as_the_proto_says() {
        let command = Command {
            arguments: vec!["cc".into(), "-c".into()],
            environment_variables: vec![EnvironmentVariable {
                name: "A".into(),
                value: "b".into(),
            }],
            platform: Some(Platform {
                properties: vec![Property {
                    name: "OSFamily".into(),
                    value: "linux".into(),
                }],
            }),
            working_directory: "w".into(),
            output_paths: vec!["o".into()],
        };
        // Worked out by hand from the wire format: key = tag << 3 | 2
        // (length-delimited) for every field here.
        let expected: Vec<u8> = [
            &[0x0a, 2][..],
            b"cc",
            &[0x0a, 2],
            b"-c",
            &[0x12, 6, 0x0a, 1, b'A', 0x12, 1, b'b'],
            &[0x2a, 19, 0x0a, 17, 0x0a, 8],
            b"OSFamily",
            &[0x12, 5],
            b"linux",
            &[0x32, 1, b'w'],
            &[0x3a, 1, b'o'],
        ]
        .concat();
        assert_eq!(command.encode_to_vec(), expected);
    }

    #[test]
    fn digest_encodes_hash_then_size() {
        let digest = Digest {
            hash: "ab".into(),
            size_bytes: 300,
        };
        assert_eq!(
            digest.encode_to_vec(),
            vec![0x0a, 2, b'a', b'b', 0x10, 0xac, 0x02]
        );
    }
}
