//! A lease's two ends: the action it carries ([`action_of`]: BuildGrid
//! 0.4.4 sends the `Action` itself or its `Digest`), and the lease sent
//! back ([`refused`], [`failed`], [`completed`]): a refusal is
//! `COMPLETED` with status `FAILED_PRECONDITION` and the finding as its
//! message, and nothing ran; the worker's own failure is `UNAVAILABLE`
//! (the scheduler may retry it elsewhere); a run is `COMPLETED` with status OK and an `ActionResult`
//! whose metadata names the worker and carries what it measured, in
//! `replay`'s own [`ReplayMetadata`].

use prost::Message as _;
use replay_cache::reapi::Action;
use replay_cache::remote::bots::{
    Lease, ACTION_RESULT_TYPE, ACTION_TYPE, DIGEST_TYPE, LEASE_COMPLETED,
};
use replay_cache::remote::proto::{
    ActionResult, Any, ExecutedActionMetadata, OutputFile, ReadEntry, ReplayMetadata, Status,
    METADATA_TYPE,
};
use replay_cache::{Cost, Digest, FORMAT_VERSION};

/// `google.rpc.Code.FAILED_PRECONDITION`: the action may not run here.
pub const FAILED_PRECONDITION: i32 = 9;
/// `google.rpc.Code.UNAVAILABLE`: the worker failed, not the action.
pub const UNAVAILABLE: i32 = 14;

/// What a lease asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The `Action` itself, and the digest of its encoding.
    Action(Action, Digest),
    /// The digest of an `Action` to read from the CAS.
    Digest(Digest),
}

/// Why a lease's payload is not an action.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// No payload.
    #[error("the lease `{0}` carries no payload")]
    Empty(String),
    /// A payload of another type.
    #[error("the lease `{lease}` carries a `{type_url}`, not a REAPI Action or its Digest")]
    Type {
        /// The lease.
        lease: String,
        /// The type it carries.
        type_url: String,
    },
    /// A payload that does not decode, or a malformed digest.
    #[error("the lease `{0}` carries a payload that does not decode")]
    Malformed(String),
}

/// The action `lease` carries.
pub fn action_of(lease: &Lease) -> Result<Payload, PayloadError> {
    let payload = lease
        .payload
        .as_ref()
        .ok_or_else(|| PayloadError::Empty(lease.id.clone()))?;
    let malformed = || PayloadError::Malformed(lease.id.clone());
    match payload.type_url.as_str() {
        ACTION_TYPE => {
            let action = Action::decode(payload.value.as_slice()).map_err(|_| malformed())?;
            // The digest of the action as encoded canonically here (a
            // server may have re-encoded it; the key is what we hash).
            Ok(Payload::Action(
                action.clone(),
                Digest::of_message(&action).0,
            ))
        }
        DIGEST_TYPE => {
            let digest = Digest::decode(payload.value.as_slice()).map_err(|_| malformed())?;
            if !digest.is_well_formed() {
                return Err(malformed());
            }
            Ok(Payload::Digest(digest))
        }
        other => Err(PayloadError::Type {
            lease: lease.id.clone(),
            type_url: other.to_owned(),
        }),
    }
}

/// `lease` completed as refused: `finding` says why; no result.
pub fn refused(lease: &Lease, finding: &str) -> Lease {
    completed_without_result(lease, FAILED_PRECONDITION, finding.to_owned())
}

/// `lease` completed as failed by the worker itself (`why`: the farm's
/// CAS, this machine), not by the action: `UNAVAILABLE`, which a client
/// takes for the farm failing, so it runs the command itself.
pub fn failed(lease: &Lease, why: &str) -> Lease {
    completed_without_result(lease, UNAVAILABLE, format!("the worker failed: {why}"))
}

/// `lease` completed with status `code` and `message`, and no result.
fn completed_without_result(lease: &Lease, code: i32, message: String) -> Lease {
    Lease {
        state: LEASE_COMPLETED,
        status: Some(Status { code, message }),
        result: None,
        ..lease.clone()
    }
}

/// What a run on this worker made and cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The outputs, paths relative to the action's working directory.
    pub outputs: Vec<OutputFile>,
    /// The tool's exit code.
    pub exit_code: i32,
    /// The digest of its stdout, uploaded.
    pub stdout: Digest,
    /// The digest of its stderr, uploaded.
    pub stderr: Digest,
    /// Wall, CPU and exact peak RSS, as measured here.
    pub cost: Cost,
    /// What the tool read outside the lease root (absolute paths, the
    /// same on the client's machine): the client uses the result only if
    /// each is the same there.
    pub read_set: Vec<ReadEntry>,
    /// The worker's name (`replay worker` on host H, bot B).
    pub worker: String,
}

/// `lease` completed with `run`'s `ActionResult`.
pub fn completed(lease: &Lease, run: &RunResult) -> Lease {
    let metadata = ReplayMetadata {
        format: FORMAT_VERSION,
        read_set: run.read_set.clone(),
        wall_ms: run.cost.wall_ms,
        cpu_ms: run.cost.cpu_ms,
        peak_rss_bytes: run.cost.peak_rss_bytes,
    };
    let result = ActionResult {
        output_files: run.outputs.clone(),
        exit_code: run.exit_code,
        stdout_digest: Some(run.stdout.clone()),
        stderr_digest: Some(run.stderr.clone()),
        execution_metadata: Some(ExecutedActionMetadata {
            worker: run.worker.clone(),
            auxiliary_metadata: vec![Any {
                type_url: METADATA_TYPE.into(),
                value: metadata.encode_to_vec(),
            }],
            ..ExecutedActionMetadata::default()
        }),
        ..ActionResult::default()
    };
    Lease {
        state: LEASE_COMPLETED,
        status: Some(Status::default()),
        result: Some(Any {
            type_url: ACTION_RESULT_TYPE.into(),
            value: result.encode_to_vec(),
        }),
        ..lease.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replay_cache::remote::bots::LEASE_ACTIVE;

    fn lease(type_url: &str, value: Vec<u8>) -> Lease {
        Lease {
            id: "job-1".into(),
            state: LEASE_ACTIVE,
            payload: Some(Any {
                type_url: type_url.into(),
                value,
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_payload_is_an_action_or_its_digest_and_nothing_else() {
        let action = Action {
            command_digest: Some(Digest::of(b"command")),
            ..Action::default()
        };
        let (digest, bytes) = Digest::of_message(&action);
        assert_eq!(
            action_of(&lease(ACTION_TYPE, bytes)),
            Ok(Payload::Action(action, digest.clone()))
        );
        assert_eq!(
            action_of(&lease(DIGEST_TYPE, digest.encode_to_vec())),
            Ok(Payload::Digest(digest))
        );
        let bad = Digest {
            hash: "../../etc".into(),
            size_bytes: 1,
        };
        assert_eq!(
            action_of(&lease(DIGEST_TYPE, bad.encode_to_vec())),
            Err(PayloadError::Malformed("job-1".into()))
        );
        assert!(matches!(
            action_of(&lease(
                "type.googleapis.com/google.protobuf.Empty",
                Vec::new()
            )),
            Err(PayloadError::Type { .. })
        ));
        let empty = Lease {
            payload: None,
            ..lease(ACTION_TYPE, Vec::new())
        };
        assert_eq!(action_of(&empty), Err(PayloadError::Empty("job-1".into())));
    }

    #[test]
    fn a_refusal_carries_the_finding_and_no_result() {
        let done = refused(
            &lease(ACTION_TYPE, Vec::new()),
            "args.unknown-flag: `-fplugin=x`",
        );
        assert_eq!(done.state, LEASE_COMPLETED);
        let status = done.status.unwrap();
        assert_eq!(status.code, FAILED_PRECONDITION);
        assert_eq!(status.message, "args.unknown-flag: `-fplugin=x`");
        assert!(done.result.is_none());
    }

    /// The worker's own failure is not a judgement of the action: a code
    /// the scheduler retries and a client does not take for a refusal.
    #[test]
    fn a_workers_own_failure_is_unavailable() {
        let done = failed(
            &lease(ACTION_TYPE, Vec::new()),
            "cannot upload the results: x",
        );
        assert_eq!(done.state, LEASE_COMPLETED);
        let status = done.status.unwrap();
        assert_eq!(status.code, UNAVAILABLE);
        assert_eq!(
            status.message,
            "the worker failed: cannot upload the results: x"
        );
        assert!(done.result.is_none());
    }

    #[test]
    fn a_completed_lease_carries_the_measured_peak() {
        let run = RunResult {
            outputs: vec![OutputFile {
                path: "a.o".into(),
                digest: Some(Digest::of(b"obj")),
                ..OutputFile::default()
            }],
            exit_code: 0,
            stdout: Digest::of(b""),
            stderr: Digest::of(b""),
            cost: Cost {
                wall_ms: 12,
                cpu_ms: 10,
                peak_rss_bytes: 48 << 20,
            },
            read_set: Vec::new(),
            worker: "replay worker w1".into(),
        };
        let done = completed(&lease(ACTION_TYPE, Vec::new()), &run);
        assert_eq!(done.status, Some(Status::default()));
        let any = done.result.unwrap();
        assert_eq!(any.type_url, ACTION_RESULT_TYPE);
        let result = ActionResult::decode(any.value.as_slice()).unwrap();
        assert_eq!(result.output_files, run.outputs);
        let meta = result.execution_metadata.unwrap();
        assert_eq!(meta.worker, "replay worker w1");
        assert_eq!(meta.auxiliary_metadata[0].type_url, METADATA_TYPE);
        let ours = ReplayMetadata::decode(meta.auxiliary_metadata[0].value.as_slice()).unwrap();
        assert_eq!(ours.peak_rss_bytes, 48 << 20);
        assert_eq!((ours.wall_ms, ours.cpu_ms), (12, 10));
    }
}
