//! The Remote Workers API (`google.devtools.remoteworkers.v1test2`, the
//! Bots service a build farm's workers poll) mirrored by hand as
//! [`super::proto`] mirrors REAPI's: the field numbers are those of
//! `bots.proto` and `worker.proto` (googleapis), checked against BuildGrid
//! 0.4.4's compiled descriptors (`buildgrid/_protos/google/devtools/
//! remoteworkers/v1test2/bots_pb2.py`). Only the fields a worker reads or
//! sets are declared; prost skips the others.
//!
//! What BuildGrid 0.4.4 puts in a lease (`buildgrid/server/sql/models.py`,
//! `JobEntry.to_lease_proto`): `payload` is an `Any` holding the REAPI
//! `Action` itself when the scheduler kept it, else the `Action`'s
//! `Digest`; a worker completes a lease by sending it back with state
//! `COMPLETED`, a `status`, and `result` an `Any` holding the
//! `ActionResult` (`Scheduler._complete_job`). A worker's scheduling
//! properties are those of its first device; its capacity is the worker
//! config `capacity` (`buildgrid/server/utils/bots.py`).

use super::proto::{Any, Status, Timestamp};

/// `google.devtools.remoteworkers.v1test2.Bots/CreateBotSession`.
pub const CREATE_BOT_SESSION: &str = "/google.devtools.remoteworkers.v1test2.Bots/CreateBotSession";
/// `google.devtools.remoteworkers.v1test2.Bots/UpdateBotSession`.
pub const UPDATE_BOT_SESSION: &str = "/google.devtools.remoteworkers.v1test2.Bots/UpdateBotSession";

/// The `type_url` of an `Any` holding a REAPI `Action`.
pub const ACTION_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.Action";
/// The `type_url` of an `Any` holding a REAPI `Digest`.
pub const DIGEST_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.Digest";
/// The `type_url` of an `Any` holding a REAPI `ActionResult`.
pub const ACTION_RESULT_TYPE: &str =
    "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult";

/// The worker config key BuildGrid reads a bot's capacity from.
pub const CAPACITY_KEY: &str = "capacity";

/// `enum BotStatus`: `OK = 1`.
pub const BOT_STATUS_OK: i32 = 1;
/// `enum BotStatus`: `BOT_TERMINATING = 4`.
pub const BOT_STATUS_TERMINATING: i32 = 4;

/// `enum LeaseState`: `PENDING = 1`.
pub const LEASE_PENDING: i32 = 1;
/// `enum LeaseState`: `ACTIVE = 2`.
pub const LEASE_ACTIVE: i32 = 2;
/// `enum LeaseState`: `COMPLETED = 4`.
pub const LEASE_COMPLETED: i32 = 4;
/// `enum LeaseState`: `CANCELLED = 5`.
pub const LEASE_CANCELLED: i32 = 5;

/// `message Device.Property` and `message Worker.Property` (and
/// `Worker.Config`): both are `string key = 1; string value = 2;`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeyValue {
    /// `string key = 1;`
    #[prost(string, tag = "1")]
    pub key: String,
    /// `string value = 2;`
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `message Device`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Device {
    /// `string handle = 1;`
    #[prost(string, tag = "1")]
    pub handle: String,
    /// `repeated Property properties = 2;`
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<KeyValue>,
}

/// `message Worker`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Worker {
    /// `repeated Device devices = 1;` the first is the one that runs.
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    /// `repeated Property properties = 2;`
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<KeyValue>,
    /// `repeated Config configs = 3;`
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<KeyValue>,
}

/// `message Lease`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Lease {
    /// `LeaseState state = 2;`
    #[prost(int32, tag = "2")]
    pub state: i32,
    /// `google.rpc.Status status = 3;` set by the bot when it completes.
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
    /// `google.protobuf.Timestamp expire_time = 5;`
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<Timestamp>,
    /// `string id = 7;`
    #[prost(string, tag = "7")]
    pub id: String,
    /// `google.protobuf.Any payload = 8;`
    #[prost(message, optional, tag = "8")]
    pub payload: Option<Any>,
    /// `google.protobuf.Any result = 9;`
    #[prost(message, optional, tag = "9")]
    pub result: Option<Any>,
}

/// `message BotSession`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BotSession {
    /// `string name = 1;` given by the server.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string bot_id = 2;`
    #[prost(string, tag = "2")]
    pub bot_id: String,
    /// `BotStatus status = 3;`
    #[prost(int32, tag = "3")]
    pub status: i32,
    /// `Worker worker = 4;`
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    /// `repeated Lease leases = 5;`
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    /// `google.protobuf.Timestamp expire_time = 6;`
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<Timestamp>,
    /// `string version = 7;`
    #[prost(string, tag = "7")]
    pub version: String,
}

/// `message CreateBotSessionRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateBotSessionRequest {
    /// `string parent = 1;` the instance name.
    #[prost(string, tag = "1")]
    pub parent: String,
    /// `BotSession bot_session = 2;`
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

/// `message UpdateBotSessionRequest` (without `update_mask = 3`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UpdateBotSessionRequest {
    /// `string name = 1;` the session's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `BotSession bot_session = 2;`
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Bytes encoded by BuildGrid 0.4.4's Python protobuf for
    /// `BotSession(name="s", bot_id="b", status=OK, leases=[Lease(id="l",
    /// state=ACTIVE)], version="3")`: the field numbers above must read it.
    #[test]
    fn a_session_encoded_by_buildgrid_decodes() {
        let bytes: &[u8] = &[
            0x0a, 0x01, b's', 0x12, 0x01, b'b', 0x18, 0x01, 0x2a, 0x05, 0x10, 0x02, 0x3a, 0x01,
            b'l', 0x3a, 0x01, b'3',
        ];
        let session = BotSession::decode(bytes).unwrap();
        assert_eq!(session.name, "s");
        assert_eq!(session.bot_id, "b");
        assert_eq!(session.status, BOT_STATUS_OK);
        assert_eq!(session.leases.len(), 1);
        assert_eq!(session.leases[0].id, "l");
        assert_eq!(session.leases[0].state, LEASE_ACTIVE);
        assert_eq!(session.version, "3");
        assert_eq!(session.encode_to_vec(), bytes);
    }
}
