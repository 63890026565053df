//! The REAPI v2 messages of the remote cache's calls, mirrored by hand as
//! [`crate::reapi`] mirrors the key's, with the field numbers of
//! `build/bazel/remote/execution/v2/remote_execution.proto`,
//! `google/bytestream/bytestream.proto`, `google/rpc/status.proto` and
//! the well-known `google/protobuf` types (bazelbuild/remote-apis v2.x;
//! checked against BuildGrid 0.4.4's compiled descriptors). Only the
//! fields `replay` reads or sets are declared: an unknown field a server
//! sends is skipped by prost, and proto3 omits fields at their default.
//! The digest is the key's own [`Digest`]: one message, one encoding.

use crate::reapi::Digest;

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// `int64 seconds = 1;`
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `int32 nanos = 2;`
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Any {
    /// `string type_url = 1;`
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// `bytes value = 2;`
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.Status` (without `details = 3`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Status {
    /// `int32 code = 1;` a `google.rpc.Code`; 0 is OK.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `string message = 2;`
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `message OutputFile`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OutputFile {
    /// `string path = 1;` relative to the working directory.
    #[prost(string, tag = "1")]
    pub path: String,
    /// `Digest digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
    /// `bool is_executable = 4;`
    #[prost(bool, tag = "4")]
    pub is_executable: bool,
    /// `bytes contents = 5;` inlined content, if the server chose to.
    #[prost(bytes = "vec", tag = "5")]
    pub contents: Vec<u8>,
}

/// `message OutputSymlink` and `message OutputDirectory`: `replay` never
/// makes either, so only their presence matters (an entry with one is
/// refused); both start with `string path = 1;`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OutputOther {
    /// `string path = 1;`
    #[prost(string, tag = "1")]
    pub path: String,
}

/// `message ExecutedActionMetadata`: the timestamps `replay` sets, and
/// its own facts in `auxiliary_metadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecutedActionMetadata {
    /// `string worker = 1;`
    #[prost(string, tag = "1")]
    pub worker: String,
    /// `Timestamp execution_start_timestamp = 7;`
    #[prost(message, optional, tag = "7")]
    pub execution_start_timestamp: Option<Timestamp>,
    /// `Timestamp execution_completed_timestamp = 8;`
    #[prost(message, optional, tag = "8")]
    pub execution_completed_timestamp: Option<Timestamp>,
    /// `repeated google.protobuf.Any auxiliary_metadata = 11;`
    #[prost(message, repeated, tag = "11")]
    pub auxiliary_metadata: Vec<Any>,
}

/// `message ActionResult`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ActionResult {
    /// `repeated OutputFile output_files = 2;`
    #[prost(message, repeated, tag = "2")]
    pub output_files: Vec<OutputFile>,
    /// `repeated OutputDirectory output_directories = 3;`
    #[prost(message, repeated, tag = "3")]
    pub output_directories: Vec<OutputOther>,
    /// `int32 exit_code = 4;`
    #[prost(int32, tag = "4")]
    pub exit_code: i32,
    /// `bytes stdout_raw = 5;`
    #[prost(bytes = "vec", tag = "5")]
    pub stdout_raw: Vec<u8>,
    /// `Digest stdout_digest = 6;`
    #[prost(message, optional, tag = "6")]
    pub stdout_digest: Option<Digest>,
    /// `bytes stderr_raw = 7;`
    #[prost(bytes = "vec", tag = "7")]
    pub stderr_raw: Vec<u8>,
    /// `Digest stderr_digest = 8;`
    #[prost(message, optional, tag = "8")]
    pub stderr_digest: Option<Digest>,
    /// `ExecutedActionMetadata execution_metadata = 9;`
    #[prost(message, optional, tag = "9")]
    pub execution_metadata: Option<ExecutedActionMetadata>,
    /// `repeated OutputSymlink output_file_symlinks = 10;`
    #[prost(message, repeated, tag = "10")]
    pub output_file_symlinks: Vec<OutputOther>,
    /// `repeated OutputSymlink output_directory_symlinks = 11;`
    #[prost(message, repeated, tag = "11")]
    pub output_directory_symlinks: Vec<OutputOther>,
    /// `repeated OutputSymlink output_symlinks = 12;`
    #[prost(message, repeated, tag = "12")]
    pub output_symlinks: Vec<OutputOther>,
}

/// `message GetActionResultRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetActionResultRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `Digest action_digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub action_digest: Option<Digest>,
    /// `bool inline_stdout = 3;`
    #[prost(bool, tag = "3")]
    pub inline_stdout: bool,
    /// `bool inline_stderr = 4;`
    #[prost(bool, tag = "4")]
    pub inline_stderr: bool,
}

/// `message UpdateActionResultRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UpdateActionResultRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `Digest action_digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub action_digest: Option<Digest>,
    /// `ActionResult action_result = 3;`
    #[prost(message, optional, tag = "3")]
    pub action_result: Option<ActionResult>,
}

/// `message FindMissingBlobsRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindMissingBlobsRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `repeated Digest blob_digests = 2;`
    #[prost(message, repeated, tag = "2")]
    pub blob_digests: Vec<Digest>,
}

/// `message FindMissingBlobsResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindMissingBlobsResponse {
    /// `repeated Digest missing_blob_digests = 2;`
    #[prost(message, repeated, tag = "2")]
    pub missing_blob_digests: Vec<Digest>,
}

/// `message BatchUpdateBlobsRequest.Request`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UpdateBlob {
    /// `Digest digest = 1;`
    #[prost(message, optional, tag = "1")]
    pub digest: Option<Digest>,
    /// `bytes data = 2;`
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// `message BatchUpdateBlobsRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BatchUpdateBlobsRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `repeated Request requests = 2;`
    #[prost(message, repeated, tag = "2")]
    pub requests: Vec<UpdateBlob>,
}

/// `message BatchUpdateBlobsResponse.Response`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UpdatedBlob {
    /// `Digest digest = 1;`
    #[prost(message, optional, tag = "1")]
    pub digest: Option<Digest>,
    /// `google.rpc.Status status = 2;`
    #[prost(message, optional, tag = "2")]
    pub status: Option<Status>,
}

/// `message BatchUpdateBlobsResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BatchUpdateBlobsResponse {
    /// `repeated Response responses = 1;`
    #[prost(message, repeated, tag = "1")]
    pub responses: Vec<UpdatedBlob>,
}

/// `message BatchReadBlobsRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BatchReadBlobsRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `repeated Digest digests = 2;`
    #[prost(message, repeated, tag = "2")]
    pub digests: Vec<Digest>,
}

/// `message BatchReadBlobsResponse.Response`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReadBlob {
    /// `Digest digest = 1;`
    #[prost(message, optional, tag = "1")]
    pub digest: Option<Digest>,
    /// `bytes data = 2;`
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// `google.rpc.Status status = 3;`
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
}

/// `message BatchReadBlobsResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BatchReadBlobsResponse {
    /// `repeated Response responses = 1;`
    #[prost(message, repeated, tag = "1")]
    pub responses: Vec<ReadBlob>,
}

/// `google.bytestream.ReadRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReadRequest {
    /// `string resource_name = 1;` `{instance}/blobs/{hash}/{size}`.
    #[prost(string, tag = "1")]
    pub resource_name: String,
    /// `int64 read_offset = 2;`
    #[prost(int64, tag = "2")]
    pub read_offset: i64,
    /// `int64 read_limit = 3;`
    #[prost(int64, tag = "3")]
    pub read_limit: i64,
}

/// `google.bytestream.ReadResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReadResponse {
    /// `bytes data = 10;`
    #[prost(bytes = "vec", tag = "10")]
    pub data: Vec<u8>,
}

/// `google.bytestream.WriteRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WriteRequest {
    /// `string resource_name = 1;`
    /// `{instance}/uploads/{uuid}/blobs/{hash}/{size}` (first message).
    #[prost(string, tag = "1")]
    pub resource_name: String,
    /// `int64 write_offset = 2;`
    #[prost(int64, tag = "2")]
    pub write_offset: i64,
    /// `bool finish_write = 3;`
    #[prost(bool, tag = "3")]
    pub finish_write: bool,
    /// `bytes data = 10;`
    #[prost(bytes = "vec", tag = "10")]
    pub data: Vec<u8>,
}

/// `google.bytestream.WriteResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WriteResponse {
    /// `int64 committed_size = 1;`
    #[prost(int64, tag = "1")]
    pub committed_size: i64,
}

/// `replay`'s own facts about a result, carried in
/// `ExecutedActionMetadata.auxiliary_metadata` as an `Any` of type
/// [`METADATA_TYPE`]: what the tool read besides its declared inputs
/// (a hit is used only if each is unchanged here) and what it cost.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReplayMetadata {
    /// The cache format version ([`crate::FORMAT_VERSION`]).
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// The read set.
    #[prost(message, repeated, tag = "2")]
    pub read_set: Vec<ReadEntry>,
    /// Wall milliseconds of the run.
    #[prost(uint64, tag = "3")]
    pub wall_ms: u64,
    /// CPU milliseconds (user and system) of the run.
    #[prost(uint64, tag = "4")]
    pub cpu_ms: u64,
    /// Peak RSS of the run, bytes.
    #[prost(uint64, tag = "5")]
    pub peak_rss_bytes: u64,
}

/// One file of a [`ReplayMetadata`] read set.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReadEntry {
    /// The absolute path.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its digest; absent: the file was looked for and not found.
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
    /// Whether the digest is of the directory's sorted names.
    #[prost(bool, tag = "3")]
    pub listing: bool,
}

/// The `type_url` of [`ReplayMetadata`].
pub const METADATA_TYPE: &str = "type.googleapis.com/replay.cache.v1.ReplayMetadata";
