//! The REAPI v2 `Execution` service's messages and `google.longrunning`'s
//! `Operation`, mirrored by hand as [`super::proto`] mirrors the cache's:
//! the field numbers are those of `remote_execution.proto` and
//! `google/longrunning/operations.proto`, checked against BuildGrid
//! 0.4.4's compiled descriptors (`buildgrid/_protos/build/bazel/remote/
//! execution/v2/remote_execution_pb2.py`, `buildgrid/_protos/google/
//! longrunning/operations_pb2.py`). Only the fields `replay` reads or sets
//! are declared; prost skips the others.

use std::path::PathBuf;
use std::time::Duration;

use prost::Message as _;
use tonic::codegen::http::uri::PathAndQuery;

use super::proto::{ActionResult, Any, Status};
use super::{call_error, Remote, RemoteError, Source};
use crate::reapi::Digest;
use crate::{ActionKey, Store};

/// How many times a dropped operation stream is rejoined with
/// `WaitExecution` before the farm counts as failed.
const MAX_REJOINS: u32 = 5;

/// `build.bazel.remote.execution.v2.Execution/Execute`.
pub const EXECUTE: &str = "/build.bazel.remote.execution.v2.Execution/Execute";
/// `build.bazel.remote.execution.v2.Execution/WaitExecution`.
pub const WAIT_EXECUTION: &str = "/build.bazel.remote.execution.v2.Execution/WaitExecution";

/// The `type_url` of an `Any` holding an `ExecuteResponse`.
pub const EXECUTE_RESPONSE_TYPE: &str =
    "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse";
/// The `type_url` of an `Any` holding an `ExecuteOperationMetadata`.
pub const EXECUTE_METADATA_TYPE: &str =
    "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteOperationMetadata";

/// `enum ExecutionStage.Value`: `QUEUED = 2`.
pub const STAGE_QUEUED: i32 = 2;
/// `enum ExecutionStage.Value`: `EXECUTING = 3`.
pub const STAGE_EXECUTING: i32 = 3;
/// `enum ExecutionStage.Value`: `COMPLETED = 4`.
pub const STAGE_COMPLETED: i32 = 4;

/// `message ExecuteRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecuteRequest {
    /// `string instance_name = 1;`
    #[prost(string, tag = "1")]
    pub instance_name: String,
    /// `bool skip_cache_lookup = 3;` `replay` sends `false`: a result the
    /// farm has is as good as a new execution (it is checked the same).
    #[prost(bool, tag = "3")]
    pub skip_cache_lookup: bool,
    /// `Digest action_digest = 6;`
    #[prost(message, optional, tag = "6")]
    pub action_digest: Option<Digest>,
}

/// `message WaitExecutionRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WaitExecutionRequest {
    /// `string name = 1;` the operation's name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `message google.longrunning.Operation`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Operation {
    /// `string name = 1;`
    #[prost(string, tag = "1")]
    pub name: String,
    /// `google.protobuf.Any metadata = 2;` an `ExecuteOperationMetadata`.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<Any>,
    /// `bool done = 3;`
    #[prost(bool, tag = "3")]
    pub done: bool,
    /// `google.rpc.Status error = 4;` (of `oneof result`).
    #[prost(message, optional, tag = "4")]
    pub error: Option<Status>,
    /// `google.protobuf.Any response = 5;` (of `oneof result`) an
    /// `ExecuteResponse`.
    #[prost(message, optional, tag = "5")]
    pub response: Option<Any>,
}

/// `message ExecuteResponse` (without `server_logs = 4`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecuteResponse {
    /// `ActionResult result = 1;`
    #[prost(message, optional, tag = "1")]
    pub result: Option<ActionResult>,
    /// `bool cached_result = 2;` whether the farm's action cache served it.
    #[prost(bool, tag = "2")]
    pub cached_result: bool,
    /// `google.rpc.Status status = 3;` not OK: the action was not run
    /// (a worker's refusal is `FAILED_PRECONDITION` with its finding).
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
    /// `string message = 5;` for the user.
    #[prost(string, tag = "5")]
    pub message: String,
}

/// `message ExecuteOperationMetadata` (without the stream names).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecuteOperationMetadata {
    /// `ExecutionStage.Value stage = 1;`
    #[prost(int32, tag = "1")]
    pub stage: i32,
    /// `Digest action_digest = 2;`
    #[prost(message, optional, tag = "2")]
    pub action_digest: Option<Digest>,
}

/// Why a remote execution gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The farm failed as a service (unreachable, an upload refused, a
    /// stream that kept dropping, garbage): nothing is known of the
    /// action, it may run elsewhere.
    #[error("the build farm failed: {0}")]
    Farm(#[from] RemoteError),
    /// The farm answered the action with a status that is not OK: a
    /// worker refused it (its finding is the message) or it could not
    /// be run there.
    #[error(
        "the build farm did not run the action {action} ({code_name}, code {code}): {message}"
    )]
    Refused {
        /// The `Action` digest.
        action: Digest,
        /// The `google.rpc.Code`.
        code: i32,
        /// Its name (`FAILED_PRECONDITION` ...).
        code_name: &'static str,
        /// The status message, then the response's message if any.
        message: String,
    },
    /// The operation ended with an error instead of a response.
    #[error("the build farm's operation `{operation}` for the action {action} failed (code {code}): {message}")]
    Operation {
        /// The `Action` digest.
        action: Digest,
        /// The operation's name.
        operation: String,
        /// The `google.rpc.Code`.
        code: i32,
        /// The error's message.
        message: String,
    },
    /// No final answer within the bound.
    #[error("the action {action} did not finish on the build farm within {wait:?}; raise the bound or check the farm's workers")]
    Timeout {
        /// The `Action` digest.
        action: Digest,
        /// The bound.
        wait: Duration,
    },
}

impl ExecuteError {
    /// Whether the farm judged the action and refused it (a worker's
    /// policy, a malformed action: `FAILED_PRECONDITION`,
    /// `INVALID_ARGUMENT`, `PERMISSION_DENIED`), so it must not run
    /// elsewhere either; anything else is the farm failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ExecuteError::Refused {
                code: 3 | 7 | 9,
                ..
            }
        )
    }
}

/// A finished remote execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The result as the farm sent it (not checked yet: it is committed
    /// through the remote cache's verified path).
    pub result: ActionResult,
    /// Whether the farm's action cache served it without executing.
    pub cached: bool,
    /// The operation's name.
    pub operation: String,
}

/// The name of a `google.rpc.Code`.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "an unknown code",
    }
}

/// The final answer a done operation carries for `action`.
fn finish(action: &Digest, operation: Operation) -> Result<Executed, ExecuteError> {
    if let Some(error) = operation.error {
        return Err(ExecuteError::Operation {
            action: action.clone(),
            operation: operation.name,
            code: error.code,
            message: error.message,
        });
    }
    let garbage = |what: &str| {
        ExecuteError::Farm(RemoteError::Garbage(format!(
            "the operation `{}` for the action {action} {what}",
            operation.name
        )))
    };
    if let Some(metadata) = operation.metadata.as_ref() {
        if metadata.type_url == EXECUTE_METADATA_TYPE {
            let metadata = ExecuteOperationMetadata::decode(metadata.value.as_slice())
                .map_err(|_| garbage("has metadata that does not decode"))?;
            if metadata.action_digest.as_ref().is_some_and(|d| d != action) {
                return Err(garbage("is about another action"));
            }
        }
    }
    let Some(any) = operation.response.as_ref() else {
        return Err(garbage("is done without a response"));
    };
    if any.type_url != EXECUTE_RESPONSE_TYPE {
        return Err(garbage(&format!("answered a `{}`", any.type_url)));
    }
    let response = ExecuteResponse::decode(any.value.as_slice())
        .map_err(|_| garbage("answered an ExecuteResponse that does not decode"))?;
    if let Some(status) = response.status.as_ref().filter(|s| s.code != 0) {
        let mut message = status.message.clone();
        if !response.message.is_empty() && response.message != message {
            message = format!("{message} ({})", response.message);
        }
        return Err(ExecuteError::Refused {
            action: action.clone(),
            code: status.code,
            code_name: code_name(status.code),
            message,
        });
    }
    let Some(result) = response.result else {
        return Err(garbage("answered OK without a result"));
    };
    Ok(Executed {
        result,
        cached: response.cached_result,
        operation: operation.name,
    })
}

/// The `Execution` service as a client of a build farm uses it.
impl Remote {
    /// Executes `key`'s action on the farm: uploads what the farm lacks of
    /// the key's messages and the input `files` (digest, the file here),
    /// each upload bounded by the timeout; sends `Execute` (cache lookup
    /// allowed); follows the operation until done, rejoining a dropped
    /// stream with `WaitExecution`, for at most `wait`.
    pub fn execute(
        &self,
        store: &Store,
        key: &ActionKey,
        files: &[(Digest, PathBuf)],
        wait: Duration,
    ) -> Result<Executed, ExecuteError> {
        let mut blobs: Vec<(Digest, Source)> = key
            .blobs
            .iter()
            .map(|(d, bytes)| (d.clone(), Source::Bytes(bytes.clone())))
            .collect();
        for (digest, path) in files {
            if !blobs.iter().any(|(d, _)| d == digest) {
                blobs.push((digest.clone(), Source::File(path.clone())));
            }
        }
        let sent = self.bounded(self.put_blobs(store, &blobs))?;
        self.count(|c| c.remote_bytes_up += sent);
        let action = key.action.clone();
        self.runtime.block_on(async {
            match tokio::time::timeout(wait, self.follow(&action)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ExecuteError::Timeout {
                    action: action.clone(),
                    wait,
                }),
            }
        })
    }

    /// Opens a stream of `Operation`s with `message` on `path`.
    async fn operations<M>(
        &self,
        call: &'static str,
        path: &'static str,
        message: M,
    ) -> Result<tonic::Streaming<Operation>, RemoteError>
    where
        M: prost::Message + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        grpc.ready()
            .await
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<M, Operation>::default();
        grpc.server_streaming(
            self.request(message),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(call_error(call))
    }

    async fn follow(&self, action: &Digest) -> Result<Executed, ExecuteError> {
        let request = ExecuteRequest {
            instance_name: self.config.instance.clone(),
            skip_cache_lookup: false,
            action_digest: Some(action.clone()),
        };
        let mut stream = self.operations("Execute", EXECUTE, request).await?;
        let mut name = String::new();
        let mut rejoins = 0;
        loop {
            let dropped = match stream.message().await {
                Ok(Some(operation)) if operation.done => return finish(action, operation),
                Ok(Some(operation)) => {
                    if !operation.name.is_empty() {
                        name = operation.name;
                    }
                    continue;
                }
                Ok(None) => "the stream ended before the operation was done".to_owned(),
                Err(status) => super::status_text(&status),
            };
            if name.is_empty() {
                return Err(ExecuteError::Farm(RemoteError::Call {
                    call: "Execute",
                    status: format!("{dropped}, and no operation was named to wait for"),
                }));
            }
            rejoins += 1;
            if rejoins > MAX_REJOINS {
                return Err(ExecuteError::Farm(RemoteError::Call {
                    call: "WaitExecution",
                    status: format!(
                        "the stream of the operation `{name}` dropped {rejoins} times ({dropped})"
                    ),
                }));
            }
            let wait = WaitExecutionRequest { name: name.clone() };
            stream = self
                .operations("WaitExecution", WAIT_EXECUTION, wait)
                .await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> Digest {
        Digest::of(text.as_bytes())
    }

    /// A done operation for `action` carrying `response`.
    fn done(action: &Digest, response: ExecuteResponse) -> Operation {
        Operation {
            name: "operations/1".into(),
            metadata: Some(Any {
                type_url: EXECUTE_METADATA_TYPE.into(),
                value: ExecuteOperationMetadata {
                    stage: STAGE_COMPLETED,
                    action_digest: Some(action.clone()),
                }
                .encode_to_vec(),
            }),
            done: true,
            error: None,
            response: Some(Any {
                type_url: EXECUTE_RESPONSE_TYPE.into(),
                value: response.encode_to_vec(),
            }),
        }
    }

    /// What a done operation means: a result, a refusal with the
    /// worker's finding, an operation error, or garbage (the farm failed).
    #[test]
    fn a_done_operation_is_a_result_a_refusal_an_error_or_garbage() {
        let action = digest("action");
        let result = ActionResult {
            exit_code: 0,
            ..ActionResult::default()
        };
        let ok = finish(
            &action,
            done(
                &action,
                ExecuteResponse {
                    result: Some(result.clone()),
                    cached_result: true,
                    ..ExecuteResponse::default()
                },
            ),
        )
        .expect("a result");
        assert_eq!((ok.result, ok.cached), (result, true));

        let refused = finish(
            &action,
            done(
                &action,
                ExecuteResponse {
                    status: Some(Status {
                        code: 9,
                        message: "the worker's policy refused the command: args.bad-value".into(),
                    }),
                    ..ExecuteResponse::default()
                },
            ),
        )
        .expect_err("refused");
        assert!(matches!(refused, ExecuteError::Refused { code: 9, .. }));
        assert!(refused.is_refusal());
        let unavailable = ExecuteError::Refused {
            action: action.clone(),
            code: 14,
            code_name: code_name(14),
            message: "the worker went away".into(),
        };
        assert!(!unavailable.is_refusal());
        let said = refused.to_string();
        assert!(
            said.contains("FAILED_PRECONDITION") && said.contains("args.bad-value"),
            "{said}"
        );

        let mut failed = done(&action, ExecuteResponse::default());
        failed.response = None;
        failed.error = Some(Status {
            code: 13,
            message: "scheduler lost the job".into(),
        });
        let failed = finish(&action, failed);
        assert!(matches!(
            failed,
            Err(ExecuteError::Operation { code: 13, .. })
        ));
        assert!(!failed.is_err_and(|e| e.is_refusal()));

        // OK without a result, no response, another action's metadata, an
        // answer of another type: the farm failed, nothing to commit.
        let mut garbage = vec![done(&action, ExecuteResponse::default())];
        let mut bare = done(&action, ExecuteResponse::default());
        bare.response = None;
        garbage.push(bare);
        garbage.push(done(
            &digest("another"),
            ExecuteResponse {
                result: Some(ActionResult::default()),
                ..ExecuteResponse::default()
            },
        ));
        let mut other = done(&action, ExecuteResponse::default());
        if let Some(any) = other.response.as_mut() {
            any.type_url = "type.googleapis.com/google.protobuf.Empty".into();
        }
        garbage.push(other);
        for operation in garbage {
            let answer = finish(&action, operation.clone());
            assert!(
                matches!(answer, Err(ExecuteError::Farm(RemoteError::Garbage(_)))),
                "{operation:?}: {answer:?}"
            );
        }
    }

    /// Bytes written by hand from the field numbers: a renumbered field
    /// fails here, not against a server.
    #[test]
    fn the_wire_form_has_the_cited_field_numbers() {
        let request = ExecuteRequest {
            instance_name: "i".into(),
            skip_cache_lookup: true,
            action_digest: Some(Digest {
                hash: "h".into(),
                size_bytes: 1,
            }),
        };
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 1, b'i', 0x18, 1, 0x32, 5, 0x0a, 1, b'h', 0x10, 1]
        );
        let wait = WaitExecutionRequest { name: "n".into() };
        assert_eq!(wait.encode_to_vec(), [0x0a, 1, b'n']);
        // name=1 "o", done=3 true, response=5 Any{type_url=1 "t"}.
        let operation = Operation::decode(&[0x0a, 1, b'o', 0x18, 1, 0x2a, 3, 0x0a, 1, b't'][..])
            .expect("an operation");
        assert_eq!(operation.name, "o");
        assert!(operation.done);
        assert_eq!(operation.response.map(|a| a.type_url), Some("t".into()));
        // cached_result=2 true, status=3 {code=1 9, message=2 "m"}, message=5 "x".
        let response =
            ExecuteResponse::decode(&[0x10, 1, 0x1a, 5, 0x08, 9, 0x12, 1, b'm', 0x2a, 1, b'x'][..])
                .expect("a response");
        assert!(response.cached_result);
        assert_eq!(
            response.status.map(|s| (s.code, s.message)),
            Some((9, "m".into()))
        );
        assert_eq!(response.message, "x");
        let metadata = ExecuteOperationMetadata::decode(&[0x08, 3][..]).expect("metadata");
        assert_eq!(metadata.stage, STAGE_EXECUTING);
    }
}
