//! A REAPI v2 remote action cache (BuildGrid, Buildbarn, NativeLink,
//! bazel-remote ...) in front of a local [`Store`]: on a local miss the
//! remote `ActionCache` is asked for the same `Action` digest, and a
//! result it has is downloaded from its CAS, every blob verified against
//! its digest, written into the local store as an entry, and restored from
//! there by the ordinary lookup (which checks the read set and rehashes
//! every blob again). After a local run is stored, what the remote lacks
//! is uploaded and the result recorded with `UpdateActionResult`.
//!
//! What a remote result must be to be used: exit code 0; exactly the
//! command's declared outputs as plain files (no directories, no
//! symlinks, no other path); `replay`'s metadata (the read set, see
//! [`proto::ReplayMetadata`]) of this format, whose every file is as it
//! was; and every blob the digest it is named by. Anything else is a
//! miss, and the command runs.
//!
//! The client is synchronous over a small tokio runtime made only when a
//! remote is configured. Each operation (a lookup with its downloads, an
//! upload) is bounded by the timeout as a whole; after the first failure
//! (down, slow, garbage) the remote is not asked again in this process,
//! so it costs a build at most one timeout.

pub mod bots;
pub mod execution;
pub mod proto;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::reapi::Digest;
use crate::store::{Entry, OutputEntry, ReadFile, RemoteCounts, Store};
use crate::{ActionKey, Cost, FORMAT_VERSION};
use bots::{BotSession, CreateBotSessionRequest, UpdateBotSessionRequest};
use proto::{
    ActionResult, Any, BatchReadBlobsRequest, BatchReadBlobsResponse, BatchUpdateBlobsRequest,
    BatchUpdateBlobsResponse, ExecutedActionMetadata, FindMissingBlobsRequest,
    FindMissingBlobsResponse, GetActionResultRequest, OutputFile, ReadEntry, ReadRequest,
    ReadResponse, ReplayMetadata, Timestamp, UpdateActionResultRequest, UpdateBlob, WriteRequest,
    WriteResponse, METADATA_TYPE,
};

/// Blobs larger than this go through ByteStream, not the batch calls.
const BATCH_BLOB_MAX: u64 = 1 << 20;
/// A batch call carries at most this many bytes of blobs (servers take 4 MiB).
const BATCH_BYTES_MAX: u64 = 2 << 20;
/// ByteStream chunk size.
const CHUNK: usize = 1 << 20;
/// The largest message `replay` decodes from a server.
const MAX_MESSAGE: usize = 8 << 20;
/// Files a remote read set may name at most.
const MAX_READ_SET: usize = 50_000;
/// The largest stdout or stderr a remote result may claim: what a local
/// lookup reads of one (a run that printed more than 1 MiB is not even
/// stored).
const MAX_STREAM: u64 = 16 << 20;

/// Whether this process may write the remote cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Look up only; upload nothing.
    Read,
    /// Look up, and upload results made here.
    ReadWrite,
}

/// Where the remote cache is and how to talk to it. Its `Debug` shows the
/// headers' names, never their values (a bearer token).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// `grpc://host:port` (plain HTTP/2) or `grpcs://host:port` (TLS).
    pub url: String,
    /// The REAPI instance name (often empty).
    pub instance: String,
    /// gRPC metadata sent with every call (`authorization: Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// A PEM file of roots to trust for `grpcs://`, instead of the system's.
    pub ca: Option<PathBuf>,
    /// The bound on each operation.
    pub timeout: Duration,
    /// Read, or read and write.
    pub mode: Mode,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("instance", &self.instance)
            .field("headers", &redacted(&self.headers))
            .field("ca", &self.ca)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Headers as `name=<redacted>`, for what may be printed.
pub fn redacted(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .map(|(name, _)| format!("{name}=<redacted>"))
        .collect()
}

/// Why a remote cache could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not `grpc://` or `grpcs://`.
    #[error("the remote cache URL `{url}` is not grpc://HOST:PORT or grpcs://HOST:PORT")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// A header cannot be gRPC metadata.
    #[error("the remote header `{name}` cannot be sent as gRPC metadata (a lowercase ASCII name and a printable ASCII value)")]
    BadHeader {
        /// Its name.
        name: String,
    },
    /// The CA file could not be read.
    #[error("cannot read the remote cache's CA file `{}`: {source}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The transport could not be configured (TLS, runtime).
    #[error("cannot set up the connection to the remote cache: {0}")]
    Setup(String),
    /// A call failed.
    #[error("{call} failed: {status}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// The gRPC status, as text.
        status: String,
    },
    /// The operation took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered something no REAPI server would.
    #[error("the server answered garbage: {0}")]
    Garbage(String),
    /// The local store refused what was fetched, or could not be read.
    #[error("the local cache: {0}")]
    Local(String),
}

/// What a remote lookup found.
#[derive(Debug)]
pub enum Fetched {
    /// The result is now an entry of the local store (look it up there).
    Stored {
        /// Blob bytes downloaded.
        bytes: u64,
    },
    /// The remote has no result for the key.
    NotFound,
    /// The remote's result is not one to use (why); the command runs.
    Refused(String),
}

/// A connection to a remote cache.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    config: RemoteConfig,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    down: AtomicBool,
    counts: Mutex<RemoteCounts>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// A gRPC status as one line.
fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn call_error(call: &'static str) -> impl Fn(tonic::Status) -> RemoteError {
    move |status| RemoteError::Call {
        call,
        status: status_text(&status),
    }
}

impl Remote {
    /// Sets up the connection (lazily: nothing is sent until the first
    /// call) and a one-thread runtime for it.
    pub fn new(config: RemoteConfig) -> Result<Remote, RemoteError> {
        let (http, tls) = if let Some(rest) = config.url.strip_prefix("grpc://") {
            (format!("http://{rest}"), false)
        } else if let Some(rest) = config.url.strip_prefix("grpcs://") {
            (format!("https://{rest}"), true)
        } else {
            return Err(RemoteError::BadUrl {
                url: config.url.clone(),
            });
        };
        let mut metadata = Vec::new();
        for (name, value) in &config.headers {
            let bad = || RemoteError::BadHeader { name: name.clone() };
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| bad())?;
            metadata.push((key, value));
        }
        let mut endpoint = Endpoint::from_shared(http).map_err(|_| RemoteError::BadUrl {
            url: config.url.clone(),
        })?;
        endpoint = endpoint
            .connect_timeout(config.timeout)
            .timeout(config.timeout);
        if tls {
            let mut tls_config = ClientTlsConfig::new();
            tls_config = match &config.ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| RemoteError::Ca {
                        path: path.clone(),
                        source,
                    })?;
                    tls_config.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls_config.with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(tls_config)
                .map_err(|e| RemoteError::Setup(e.to_string()))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        // `connect_lazy` spawns the connection's task: inside the runtime.
        let channel = {
            let _entered = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Remote {
            runtime,
            channel,
            config,
            metadata,
            down: AtomicBool::new(false),
            counts: Mutex::new(RemoteCounts::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Whether an earlier failure took the remote out of this run.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Takes the remote out of this run; true the first time (warn then).
    pub fn take_down(&self) -> bool {
        !self.down.swap(true, Ordering::Relaxed)
    }

    /// What this process's remote calls did so far.
    pub fn counts(&self) -> RemoteCounts {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }

    fn count(&self, change: impl FnOnce(&mut RemoteCounts)) {
        if let Ok(mut counts) = self.counts.lock() {
            change(&mut counts);
        }
    }

    /// Runs `operation` on the runtime, bounded by the timeout.
    fn bounded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let timeout = self.config.timeout;
        self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, operation).await {
                Ok(result) => result,
                Err(_) => Err(RemoteError::Timeout(timeout)),
            }
        })
    }

    fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        for (key, value) in &self.metadata {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        request
    }

    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    async fn unary<Req, Resp>(
        &self,
        call: &'static str,
        path: &'static str,
        message: Req,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{call}: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(
            self.request(message),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
    }

    /// The remote's `ActionResult` for `action`, if it has one (no check).
    pub fn get_action_result(&self, action: &Digest) -> Result<Option<ActionResult>, RemoteError> {
        self.bounded(self.get_result(action))
    }

    async fn get_result(&self, action: &Digest) -> Result<Option<ActionResult>, RemoteError> {
        let request = GetActionResultRequest {
            instance_name: self.config.instance.clone(),
            action_digest: Some(action.clone()),
            inline_stdout: true,
            inline_stderr: true,
        };
        match self
            .unary::<_, ActionResult>(
                "GetActionResult",
                "/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
                request,
            )
            .await
        {
            Ok(result) => Ok(Some(result)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(call_error("GetActionResult")(status)),
        }
    }

    /// Records `result` for `action` in the remote's action cache, as is
    /// (tests use it to plant an entry; a run calls [`Remote::upload`]).
    pub fn update_action_result(
        &self,
        action: &Digest,
        result: ActionResult,
    ) -> Result<(), RemoteError> {
        self.bounded(self.update_result(action, result))
    }

    async fn update_result(
        &self,
        action: &Digest,
        result: ActionResult,
    ) -> Result<(), RemoteError> {
        let request = UpdateActionResultRequest {
            instance_name: self.config.instance.clone(),
            action_digest: Some(action.clone()),
            action_result: Some(result),
        };
        self.unary::<_, ActionResult>(
            "UpdateActionResult",
            "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult",
            request,
        )
        .await
        .map(drop)
        .map_err(call_error("UpdateActionResult"))
    }

    /// Uploads what of `blobs` the remote lacks (each in memory, or read
    /// from `store`'s CAS when it is sent: a large one is streamed);
    /// returns the bytes sent.
    async fn put_blobs(
        &self,
        store: &Store,
        blobs: &[(Digest, Source)],
    ) -> Result<u64, RemoteError> {
        let request = FindMissingBlobsRequest {
            instance_name: self.config.instance.clone(),
            blob_digests: blobs.iter().map(|(d, _)| d.clone()).collect(),
        };
        let missing: FindMissingBlobsResponse = self
            .unary(
                "FindMissingBlobs",
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
                request,
            )
            .await
            .map_err(call_error("FindMissingBlobs"))?;
        let mut sent = 0u64;
        let mut batch: Vec<UpdateBlob> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut done = std::collections::HashSet::new();
        for digest in &missing.missing_blob_digests {
            if !done.insert(digest.hash.clone()) {
                continue;
            }
            let Some((_, source)) = blobs.iter().find(|(d, _)| d == digest) else {
                return Err(RemoteError::Garbage(format!(
                    "FindMissingBlobs named {digest}, which was not asked about"
                )));
            };
            let missing_blob =
                || RemoteError::Local(format!("the blob {digest} is missing or damaged"));
            sent += digest.size();
            if digest.size() > BATCH_BLOB_MAX {
                let reader: Box<dyn std::io::Read + Send> = match source {
                    Source::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
                    Source::Stored => Box::new(store.open_blob(digest).ok_or_else(missing_blob)?),
                    Source::File(path) => Box::new(std::fs::File::open(path).map_err(|e| {
                        RemoteError::Local(format!("cannot read `{}`: {e}", path.display()))
                    })?),
                };
                self.write_stream(digest, reader).await?;
                continue;
            }
            let bytes = match source {
                Source::Bytes(bytes) => bytes.clone(),
                Source::Stored => store.blob_bytes(digest).ok_or_else(missing_blob)?,
                Source::File(path) => std::fs::read(path).map_err(|e| {
                    RemoteError::Local(format!("cannot read `{}`: {e}", path.display()))
                })?,
            };
            if batch_bytes + digest.size() > BATCH_BYTES_MAX {
                self.batch_update(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch_bytes += digest.size();
            batch.push(UpdateBlob {
                digest: Some(digest.clone()),
                data: bytes,
            });
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(sent)
    }

    async fn batch_update(&self, requests: Vec<UpdateBlob>) -> Result<(), RemoteError> {
        let request = BatchUpdateBlobsRequest {
            instance_name: self.config.instance.clone(),
            requests,
        };
        let response: BatchUpdateBlobsResponse = self
            .unary(
                "BatchUpdateBlobs",
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
                request,
            )
            .await
            .map_err(call_error("BatchUpdateBlobs"))?;
        if let Some(bad) = response
            .responses
            .iter()
            .find(|r| r.status.as_ref().is_some_and(|s| s.code != 0))
        {
            let status = bad.status.clone().unwrap_or_default();
            return Err(RemoteError::Call {
                call: "BatchUpdateBlobs",
                status: format!("code {}: {}", status.code, status.message),
            });
        }
        Ok(())
    }

    /// Writes one blob with ByteStream, read from `reader` a chunk at a
    /// time as the stream is sent (never whole in memory).
    async fn write_stream(
        &self,
        digest: &Digest,
        mut reader: Box<dyn std::io::Read + Send>,
    ) -> Result<(), RemoteError> {
        let mut resource = Some(format!(
            "{}uploads/{}/blobs/{}/{}",
            instance_prefix(&self.config.instance),
            upload_id(),
            digest.hash,
            digest.size_bytes
        ));
        let size = digest.size();
        let mut offset = 0u64;
        let mut finished = false;
        // A read error ends the stream without `finish_write`: the server
        // then refuses the write, and the upload fails.
        let messages = std::iter::from_fn(move || {
            if finished {
                return None;
            }
            let want = usize::try_from((size - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
            let mut data = vec![0u8; want];
            if std::io::Read::read_exact(&mut reader, &mut data).is_err() {
                finished = true;
                return None;
            }
            let message = WriteRequest {
                resource_name: resource.take().unwrap_or_default(),
                write_offset: i64::try_from(offset).unwrap_or(i64::MAX),
                finish_write: offset + want as u64 == size,
                data,
            };
            offset += want as u64;
            finished = message.finish_write;
            Some(message)
        });
        let mut grpc = self.grpc();
        grpc.ready()
            .await
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<WriteRequest, WriteResponse>::default();
        let response = grpc
            .client_streaming(
                self.request(tokio_stream::iter(messages)),
                PathAndQuery::from_static("/google.bytestream.ByteStream/Write"),
                codec,
            )
            .await
            .map_err(call_error("ByteStream.Write"))?
            .into_inner();
        if response.committed_size != digest.size_bytes {
            return Err(RemoteError::Garbage(format!(
                "ByteStream.Write committed {} bytes of {digest}",
                response.committed_size
            )));
        }
        Ok(())
    }

    /// Downloads `digests` (none in `store` yet) into `store`, each
    /// verified; returns the bytes downloaded, or why one was refused.
    async fn download(
        &self,
        store: &Store,
        digests: &[Digest],
    ) -> Result<Result<u64, String>, RemoteError> {
        let mut got = 0u64;
        let mut batch: Vec<Digest> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut large = Vec::new();
        for digest in digests {
            if digest.size() > BATCH_BLOB_MAX {
                large.push(digest.clone());
                continue;
            }
            if batch_bytes + digest.size() > BATCH_BYTES_MAX && !batch.is_empty() {
                match self.batch_read(store, std::mem::take(&mut batch)).await? {
                    Ok(n) => got += n,
                    Err(why) => return Ok(Err(why)),
                }
                batch_bytes = 0;
            }
            batch_bytes += digest.size();
            batch.push(digest.clone());
        }
        if !batch.is_empty() {
            match self.batch_read(store, batch).await? {
                Ok(n) => got += n,
                Err(why) => return Ok(Err(why)),
            }
        }
        for digest in large {
            match self.read_stream(store, &digest).await? {
                Ok(n) => got += n,
                Err(why) => return Ok(Err(why)),
            }
        }
        Ok(Ok(got))
    }

    async fn batch_read(
        &self,
        store: &Store,
        digests: Vec<Digest>,
    ) -> Result<Result<u64, String>, RemoteError> {
        let request = BatchReadBlobsRequest {
            instance_name: self.config.instance.clone(),
            digests: digests.clone(),
        };
        let response: BatchReadBlobsResponse = self
            .unary(
                "BatchReadBlobs",
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs",
                request,
            )
            .await
            .map_err(call_error("BatchReadBlobs"))?;
        let mut got = 0u64;
        for digest in &digests {
            let Some(blob) = response
                .responses
                .iter()
                .find(|r| r.digest.as_ref() == Some(digest))
            else {
                return Ok(Err(format!("the remote did not send the blob {digest}")));
            };
            if let Some(status) = blob.status.as_ref().filter(|s| s.code != 0) {
                return Ok(Err(format!(
                    "the remote could not send the blob {digest} (code {}: {})",
                    status.code, status.message
                )));
            }
            if let Err(why) = keep(store, digest, &blob.data) {
                return Ok(Err(why));
            }
            got += blob.data.len() as u64;
        }
        Ok(Ok(got))
    }

    async fn read_stream(
        &self,
        store: &Store,
        digest: &Digest,
    ) -> Result<Result<u64, String>, RemoteError> {
        let resource = format!(
            "{}blobs/{}/{}",
            instance_prefix(&self.config.instance),
            digest.hash,
            digest.size_bytes
        );
        let mut grpc = self.grpc();
        grpc.ready()
            .await
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<ReadRequest, ReadResponse>::default();
        let mut stream = grpc
            .server_streaming(
                self.request(ReadRequest {
                    resource_name: resource,
                    read_offset: 0,
                    read_limit: 0,
                }),
                PathAndQuery::from_static("/google.bytestream.ByteStream/Read"),
                codec,
            )
            .await
            .map_err(call_error("ByteStream.Read"))?
            .into_inner();
        let mut sink = store
            .blob_sink(digest)
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let mut got = 0u64;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(call_error("ByteStream.Read"))?
        {
            got += chunk.data.len() as u64;
            if let Err(e) = sink.write(&chunk.data) {
                return Ok(Err(e.to_string()));
            }
        }
        match sink.finish() {
            Ok(_) => Ok(Ok(got)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Looks `key` up remotely and, on a usable hit, makes it an entry of
    /// `store` (`expected`: the command's declared outputs; `may_read`:
    /// whether the command's sandbox lets its tool read a file (`true`),
    /// or look for one (`false`: a file expected absent), so a read set
    /// naming another file is refused before anything is opened). A
    /// failure of the remote is an `Err` (take it down); a result not to
    /// use is [`Fetched::Refused`].
    pub fn fetch(
        &self,
        store: &Store,
        key: &Digest,
        expected: &[String],
        may_read: &dyn Fn(&std::path::Path, bool) -> bool,
    ) -> Result<Fetched, RemoteError> {
        self.fetch_as(store, key, key, expected, may_read)
    }

    /// [`Remote::fetch`] of the result the remote holds for `key`, kept
    /// in `store` under `stored_as`: an action that differs from it only
    /// by a scheduling hint of a build farm (a `memory_kb` property,
    /// [`crate::ActionKey::with_property`]) that no worker runs by.
    pub fn fetch_as(
        &self,
        store: &Store,
        key: &Digest,
        stored_as: &Digest,
        expected: &[String],
        may_read: &dyn Fn(&std::path::Path, bool) -> bool,
    ) -> Result<Fetched, RemoteError> {
        // Checking the read set hashes files here, which blocks the
        // runtime (its timer cannot fire meanwhile): it watches the same
        // deadline itself.
        let deadline = Instant::now() + self.config.timeout;
        let fetched =
            self.bounded(self.fetch_async(store, key, stored_as, expected, may_read, deadline));
        match &fetched {
            Ok(Fetched::Stored { bytes }) => self.count(|c| {
                c.remote_hits += 1;
                c.remote_bytes_down += bytes;
            }),
            Ok(_) | Err(_) => self.count(|c| c.remote_misses += 1),
        }
        fetched
    }

    async fn fetch_async(
        &self,
        store: &Store,
        key: &Digest,
        stored_as: &Digest,
        expected: &[String],
        may_read: &dyn Fn(&std::path::Path, bool) -> bool,
        deadline: Instant,
    ) -> Result<Fetched, RemoteError> {
        let Some(result) = self.get_result(key).await? else {
            return Ok(Fetched::NotFound);
        };
        let (mut entry, inline) = match to_entry(stored_as, &result, expected) {
            Ok(parts) => parts,
            Err(why) => return Ok(Fetched::Refused(why)),
        };
        // A file the tool could not have read here is none of this
        // command's business: not opened, not even looked for, so a
        // server learns nothing of it (whether it exists, whether a guess
        // of its content is right) by what is asked next.
        if let Some(read) = entry
            .read_set
            .iter()
            .find(|r| !may_read(&r.path, r.digest.is_some() || r.listing))
        {
            return Ok(Fetched::Refused(format!(
                "its read set names `{}`, which this command's sandbox would not let its tool read or look for",
                read.path.display()
            )));
        }
        let changed = store
            .remote_read_set_changed(&entry.read_set, &|| Instant::now() >= deadline)
            .map_err(|_| RemoteError::Timeout(self.config.timeout))?;
        if let Some(path) = changed {
            return Ok(Fetched::Refused(format!(
                "`{}`, which the tool read where the result was made, is not the same here",
                path.display()
            )));
        }
        let mut bytes = 0u64;
        for (digest, data) in &inline {
            if let Err(why) = keep(store, digest, data) {
                return Ok(Fetched::Refused(why));
            }
            bytes += data.len() as u64;
        }
        let mut wanted: Vec<Digest> = entry
            .outputs
            .iter()
            .map(|o| o.digest.clone())
            .chain([entry.stdout.clone(), entry.stderr.clone()])
            .filter(|d| !store.has_blob(d))
            .collect();
        wanted.sort();
        wanted.dedup();
        if let Err(why) = fits(&wanted, store.max_size()) {
            return Ok(Fetched::Refused(why));
        }
        // The empty blob needs no call.
        wanted.retain(|d| d.size_bytes != 0 || keep(store, d, b"").is_err());
        match self.download(store, &wanted).await? {
            Ok(n) => bytes += n,
            Err(why) => return Ok(Fetched::Refused(why)),
        }
        entry.format = FORMAT_VERSION;
        if let Err(e) = store.put_entry(&entry, expected) {
            return Ok(Fetched::Refused(e.to_string()));
        }
        Ok(Fetched::Stored { bytes })
    }

    /// Uploads the local `entry` stored under `key` (its blobs, and the
    /// key's `Action`, `Command` and `Directory` messages) and records it
    /// with `UpdateActionResult`. Read mode uploads nothing.
    pub fn upload(&self, store: &Store, key: &ActionKey, entry: &Entry) -> Result<(), RemoteError> {
        if self.config.mode != Mode::ReadWrite {
            return Ok(());
        }
        // The key's messages in memory; the outputs and streams are read
        // from the store only if the remote lacks them.
        let mut blobs: Vec<(Digest, Source)> = key
            .blobs
            .iter()
            .map(|(d, bytes)| (d.clone(), Source::Bytes(bytes.clone())))
            .collect();
        for digest in entry
            .outputs
            .iter()
            .map(|o| &o.digest)
            .chain([&entry.stdout, &entry.stderr])
        {
            if !blobs.iter().any(|(d, _)| d == digest) {
                blobs.push((digest.clone(), Source::Stored));
            }
        }
        let result = to_result(entry);
        let sent = self.bounded(async {
            let sent = self.put_blobs(store, &blobs).await?;
            self.update_result(&key.action, result).await?;
            Ok(sent)
        })?;
        self.count(|c| {
            c.remote_uploads += 1;
            c.remote_bytes_up += sent;
        });
        Ok(())
    }
}

/// The Bots service and the CAS as a worker of a build farm uses them.
impl Remote {
    /// Registers a bot session (`CreateBotSession` under the instance);
    /// the server names it and may hand it leases at once.
    pub fn create_bot_session(&self, session: BotSession) -> Result<BotSession, RemoteError> {
        let request = CreateBotSessionRequest {
            parent: self.config.instance.clone(),
            bot_session: Some(session),
        };
        self.bounded(async {
            self.unary("CreateBotSession", bots::CREATE_BOT_SESSION, request)
                .await
                .map_err(call_error("CreateBotSession"))
        })
    }

    /// Reports a session's leases (`UpdateBotSession`); the server answers
    /// with the leases it now holds for the bot, after waiting a while for
    /// new work when the bot has room and nothing changed.
    pub fn update_bot_session(&self, session: BotSession) -> Result<BotSession, RemoteError> {
        let request = UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session),
        };
        self.bounded(async {
            self.unary("UpdateBotSession", bots::UPDATE_BOT_SESSION, request)
                .await
                .map_err(call_error("UpdateBotSession"))
        })
    }

    /// Downloads `digests` the store lacks into `store`'s CAS, each
    /// verified against its digest; `Ok(Err(why))` names a blob that is
    /// missing or not what its digest says.
    pub fn fetch_blobs(
        &self,
        store: &Store,
        digests: &[Digest],
    ) -> Result<Result<u64, String>, RemoteError> {
        let mut wanted: Vec<Digest> = digests
            .iter()
            .filter(|d| !store.has_blob(d))
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        wanted.retain(|d| d.size_bytes != 0 || keep(store, d, b"").is_err());
        self.bounded(self.download(store, &wanted))
    }

    /// Uploads what of `digests` (blobs of `store`'s CAS) and `messages`
    /// (encoded in memory) the remote lacks; returns the bytes sent.
    pub fn put_blobs_from(
        &self,
        store: &Store,
        digests: &[Digest],
        messages: &[(Digest, Vec<u8>)],
    ) -> Result<u64, RemoteError> {
        let mut blobs: Vec<(Digest, Source)> = messages
            .iter()
            .map(|(d, bytes)| (d.clone(), Source::Bytes(bytes.clone())))
            .collect();
        for digest in digests {
            if !blobs.iter().any(|(d, _)| d == digest) {
                blobs.push((digest.clone(), Source::Stored));
            }
        }
        self.bounded(self.put_blobs(store, &blobs))
    }
}

/// Where a blob to upload comes from.
enum Source {
    /// These bytes (a message of the key).
    Bytes(Vec<u8>),
    /// The local store's CAS, read when sent.
    Stored,
    /// A file on disk (an input of a command to execute), read when sent;
    /// the server checks it against its digest.
    File(PathBuf),
}

/// `INSTANCE/`, or nothing for the empty instance.
fn instance_prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// A fresh UUID-shaped upload id (ByteStream wants one per write).
fn upload_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let h = Digest::of(seed.as_bytes()).hash;
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Whether blobs of the sizes `wanted` claim fit in a local cache of
/// `cap` bytes: what an entry claims decides how much is fetched, never
/// more than the local cache may hold. The sum saturates: sizes near
/// `i64::MAX` must not wrap to a small one.
fn fits(wanted: &[Digest], cap: u64) -> Result<(), String> {
    let claimed = wanted
        .iter()
        .fold(0u64, |sum, d| sum.saturating_add(d.size()));
    if claimed > cap {
        return Err(format!(
            "its blobs ({claimed} bytes) are larger than the local cache's cap ({cap} bytes)"
        ));
    }
    Ok(())
}

/// Writes `data` into `store` as `digest`, refusing it unless it is.
fn keep(store: &Store, digest: &Digest, data: &[u8]) -> Result<(), String> {
    let mut sink = store.blob_sink(digest).map_err(|e| e.to_string())?;
    sink.write(data).map_err(|e| e.to_string())?;
    sink.finish().map(drop).map_err(|e| e.to_string())
}

/// A remote `ActionResult` as a local entry (without its blobs), and the
/// blobs it inlined; why it is not one to use otherwise.
#[allow(clippy::type_complexity)]
fn to_entry(
    key: &Digest,
    result: &ActionResult,
    expected: &[String],
) -> Result<(Entry, Vec<(Digest, Vec<u8>)>), String> {
    if result.exit_code != 0 {
        return Err(format!("it records exit code {}", result.exit_code));
    }
    if let Some(other) = result
        .output_directories
        .iter()
        .chain(&result.output_symlinks)
        .chain(&result.output_file_symlinks)
        .chain(&result.output_directory_symlinks)
        .next()
    {
        return Err(format!(
            "it names `{}` as a directory or symlink output, which no command declares",
            other.path
        ));
    }
    let mut inline = Vec::new();
    let mut outputs = Vec::new();
    for file in &result.output_files {
        if !expected.contains(&file.path) {
            return Err(format!(
                "it names the output `{}`, which the command does not declare",
                file.path
            ));
        }
        if outputs.iter().any(|o: &OutputEntry| o.path == file.path) {
            return Err(format!("it names the output `{}` twice", file.path));
        }
        let digest = well_formed(file.digest.as_ref(), &file.path)?;
        if !file.contents.is_empty() {
            inline.push((digest.clone(), file.contents.clone()));
        }
        outputs.push(OutputEntry {
            path: file.path.clone(),
            size: digest.size(),
            digest,
            executable: file.is_executable,
        });
    }
    if let Some(missing) = expected
        .iter()
        .find(|e| !result.output_files.iter().any(|f| f.path == **e))
    {
        return Err(format!("it lacks the declared output `{missing}`"));
    }
    let stream = |raw: &[u8], digest: Option<&Digest>, what: &str| -> Result<Digest, String> {
        match digest {
            Some(d) if raw.is_empty() => well_formed(Some(d), what),
            Some(d) if *d != Digest::of(raw) => {
                Err(format!("its inlined {what} does not match its digest"))
            }
            _ => Ok(Digest::of(raw)),
        }
    };
    let stdout = stream(&result.stdout_raw, result.stdout_digest.as_ref(), "stdout")?;
    let stderr = stream(&result.stderr_raw, result.stderr_digest.as_ref(), "stderr")?;
    for (digest, what) in [(&stdout, "stdout"), (&stderr, "stderr")] {
        if digest.size() > MAX_STREAM {
            return Err(format!(
                "its {what} claims {} bytes, more than the {MAX_STREAM} a hit may print",
                digest.size()
            ));
        }
    }
    for (raw, digest) in [(&result.stdout_raw, &stdout), (&result.stderr_raw, &stderr)] {
        if !raw.is_empty() {
            inline.push((digest.clone(), raw.clone()));
        }
    }
    let metadata = result
        .execution_metadata
        .as_ref()
        .into_iter()
        .flat_map(|m| &m.auxiliary_metadata)
        .find(|any| any.type_url == METADATA_TYPE)
        .ok_or("it carries no read set of replay's, so what the tool read cannot be checked")?;
    let metadata = ReplayMetadata::decode(metadata.value.as_slice())
        .map_err(|e| format!("its read set cannot be decoded: {e}"))?;
    if metadata.format != FORMAT_VERSION {
        return Err(format!(
            "it is of cache format {}, not {FORMAT_VERSION}",
            metadata.format
        ));
    }
    if metadata.read_set.len() > MAX_READ_SET {
        return Err(format!("it lists more than {MAX_READ_SET} files read"));
    }
    let mut read_set = Vec::with_capacity(metadata.read_set.len());
    for read in metadata.read_set {
        let path = PathBuf::from(&read.path);
        if !path.is_absolute() {
            return Err(format!("its read set names `{}`, not absolute", read.path));
        }
        if let Some(why) = not_a_read(&read.path) {
            return Err(format!(
                "its read set names `{}`, {why}",
                read.path.escape_debug()
            ));
        }
        let digest = match read.digest {
            Some(d) => Some(well_formed(Some(&d), &read.path)?),
            None => None,
        };
        read_set.push(ReadFile {
            path,
            digest,
            listing: read.listing,
        });
    }
    Ok((
        Entry {
            format: FORMAT_VERSION,
            action: key.clone(),
            outputs,
            stdout,
            stderr,
            exit_code: 0,
            cost: Cost {
                wall_ms: metadata.wall_ms,
                cpu_ms: metadata.cpu_ms,
                // Not the server's word: `-j` admits a command by the peak
                // its entry records, and a peak claimed tiny would let a
                // memory-hungry tool start beside others (one that runs
                // after this entry stops matching). 0 is "not measured".
                peak_rss_bytes: 0,
            },
            read_set,
        },
        inline,
    ))
}

/// Pseudo-file systems: a read set made by `replay` never names a file
/// there, and what is there is no file content (`/proc/self/pagemap`
/// never ends, `/dev/zero` neither, a FIFO blocks).
const PSEUDO: &[&str] = &["/proc", "/sys", "/dev"];

/// Why a remote read set's absolute `path` is not one `replay` would have
/// recorded (the tracer gives canonical paths): a `.`, `..` or empty
/// segment, a NUL, or a pseudo-file system.
fn not_a_read(path: &str) -> Option<&'static str> {
    if path.contains('\0') {
        return Some("which holds a NUL byte");
    }
    let segments = path.strip_prefix('/')?.split('/');
    if segments
        .clone()
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("which is not a plain path (an empty, `.` or `..` segment)");
    }
    if PSEUDO
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return Some("a pseudo-file (`/proc`, `/sys` or `/dev`) no read set records");
    }
    None
}

fn well_formed(digest: Option<&Digest>, what: &str) -> Result<Digest, String> {
    match digest {
        Some(d) if d.is_well_formed() => Ok(d.clone()),
        Some(d) => Err(format!("it names `{what}` by the malformed digest {d}")),
        None => Err(format!("it names `{what}` without a digest")),
    }
}

/// A local entry as the `ActionResult` uploaded for it.
pub fn to_result(entry: &Entry) -> ActionResult {
    let metadata = ReplayMetadata {
        format: FORMAT_VERSION,
        read_set: entry
            .read_set
            .iter()
            .map(|r| ReadEntry {
                path: r.path.to_string_lossy().into_owned(),
                digest: r.digest.clone(),
                listing: r.listing,
            })
            .collect(),
        wall_ms: entry.cost.wall_ms,
        cpu_ms: entry.cost.cpu_ms,
        peak_rss_bytes: entry.cost.peak_rss_bytes,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.saturating_sub(Duration::from_millis(entry.cost.wall_ms));
    let stamp = |d: Duration| Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    };
    ActionResult {
        output_files: entry
            .outputs
            .iter()
            .map(|o| OutputFile {
                path: o.path.clone(),
                digest: Some(o.digest.clone()),
                is_executable: o.executable,
                contents: Vec::new(),
            })
            .collect(),
        exit_code: 0,
        stdout_digest: Some(entry.stdout.clone()),
        stderr_digest: Some(entry.stderr.clone()),
        execution_metadata: Some(ExecutedActionMetadata {
            worker: format!("replay {}", env!("CARGO_PKG_VERSION")),
            execution_start_timestamp: Some(stamp(start)),
            execution_completed_timestamp: Some(stamp(now)),
            auxiliary_metadata: vec![Any {
                type_url: METADATA_TYPE.into(),
                value: metadata.encode_to_vec(),
            }],
        }),
        ..ActionResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Digest {
        Digest::of(b"action")
    }

    fn entry() -> Entry {
        Entry {
            format: FORMAT_VERSION,
            action: key(),
            outputs: vec![OutputEntry {
                path: "a.o".into(),
                digest: Digest::of(b"object"),
                executable: false,
                size: 6,
            }],
            stdout: Digest::of(b""),
            stderr: Digest::of(b"warning\n"),
            exit_code: 0,
            cost: Cost {
                wall_ms: 12,
                cpu_ms: 10,
                peak_rss_bytes: 1 << 20,
            },
            read_set: vec![
                ReadFile {
                    path: "/usr/include/stdio.h".into(),
                    digest: Some(Digest::of(b"stdio")),
                    listing: false,
                },
                ReadFile {
                    path: "/usr/include/absent.h".into(),
                    digest: None,
                    listing: false,
                },
            ],
        }
    }

    fn expected() -> Vec<String> {
        vec!["a.o".into()]
    }

    #[test]
    fn an_uploaded_result_reads_back_as_the_same_entry() {
        let result = to_result(&entry());
        let decoded = ActionResult::decode(result.encode_to_vec().as_slice()).unwrap();
        let (back, inline) = to_entry(&key(), &decoded, &expected()).unwrap();
        let mut local = entry();
        local.cost.peak_rss_bytes = 0;
        assert_eq!(back, local);
        assert!(inline.is_empty());
    }

    #[test]
    fn a_result_that_is_not_the_commands_is_refused() {
        let refused = |change: &dyn Fn(&mut ActionResult), expected: &[String], what: &str| {
            let mut result = to_result(&entry());
            change(&mut result);
            let why = to_entry(&key(), &result, expected).unwrap_err();
            assert!(why.contains(what), "{why}");
        };
        refused(
            &|r| {
                let mut other = r.output_files[0].clone();
                other.path = "../evil.o".into();
                r.output_files.push(other);
            },
            &expected(),
            "`../evil.o`, which the command does not declare",
        );
        refused(
            &|_| {},
            &["a.o".into(), "b.o".into()],
            "lacks the declared output `b.o`",
        );
        refused(
            &|r| {
                r.output_symlinks
                    .push(proto::OutputOther { path: "a.o".into() })
            },
            &expected(),
            "directory or symlink",
        );
        refused(&|r| r.exit_code = 1, &expected(), "exit code 1");
        refused(&|r| r.execution_metadata = None, &expected(), "no read set");
        refused(
            &|r| {
                r.stderr_raw = b"other\n".to_vec();
            },
            &expected(),
            "inlined stderr does not match",
        );
        refused(
            &|r| r.output_files[0].digest = None,
            &expected(),
            "without a digest",
        );
        refused(
            &|r| {
                r.output_files[0].digest = Some(Digest {
                    hash: "../../etc".into(),
                    size_bytes: 1,
                })
            },
            &expected(),
            "malformed digest",
        );
        refused(
            &|r| {
                let metadata = r.execution_metadata.as_mut().unwrap();
                let mut m = ReplayMetadata::decode(metadata.auxiliary_metadata[0].value.as_slice())
                    .unwrap();
                m.read_set[0].path = "usr/include/stdio.h".into();
                metadata.auxiliary_metadata[0].value = m.encode_to_vec();
            },
            &expected(),
            "not absolute",
        );
        // Regression: a read set could name any file, which was then
        // opened and hashed: `/proc/self/pagemap` (about 256 GiB, hashed
        // past `--remote-timeout`), a path through `..`.
        for (path, why) in [
            ("/proc/self/pagemap", "pseudo-file"),
            ("/dev/zero", "pseudo-file"),
            ("/sys", "pseudo-file"),
            ("/usr/../proc/kcore", "not a plain path"),
            ("/usr//include/stdio.h", "not a plain path"),
            ("/usr/include/./stdio.h", "not a plain path"),
            ("/usr/include/std\0io.h", "NUL"),
        ] {
            refused(
                &|r| {
                    let metadata = r.execution_metadata.as_mut().unwrap();
                    let mut m =
                        ReplayMetadata::decode(metadata.auxiliary_metadata[0].value.as_slice())
                            .unwrap();
                    m.read_set[0].path = path.into();
                    metadata.auxiliary_metadata[0].value = m.encode_to_vec();
                },
                &expected(),
                why,
            );
        }
        // Regression: a stdout claimed at 4 GiB was downloaded (within the
        // cache's cap) though a lookup reads at most 16 MiB of one.
        refused(
            &|r| {
                r.stdout_digest = Some(Digest {
                    hash: Digest::of(b"").hash,
                    size_bytes: 4 << 30,
                })
            },
            &expected(),
            "its stdout claims 4294967296 bytes",
        );
        // Regression: a declared output named twice (two digests) was
        // downloaded twice before the store refused the entry.
        refused(
            &|r| {
                let mut again = r.output_files[0].clone();
                again.digest = Some(Digest::of(b"other"));
                r.output_files.push(again);
            },
            &expected(),
            "`a.o` twice",
        );
    }

    /// Regression: a remote result's claimed peak RSS became the entry's,
    /// which `-j` admits a command by: a server claiming 1 byte for a
    /// memory-hungry tool let it start beside others.
    #[test]
    fn a_remote_peak_is_never_a_prediction() {
        let mut result = to_result(&entry());
        let metadata = result.execution_metadata.as_mut().unwrap();
        let mut m =
            ReplayMetadata::decode(metadata.auxiliary_metadata[0].value.as_slice()).unwrap();
        m.peak_rss_bytes = 1;
        metadata.auxiliary_metadata[0].value = m.encode_to_vec();
        let (back, _) = to_entry(&key(), &result, &expected()).unwrap();
        assert_eq!(back.cost.peak_rss_bytes, 0);
        assert_eq!(back.cost.wall_ms, 12, "the rest of the cost is kept");
    }

    /// Regression: the claimed sizes were summed with `+`: three digests
    /// of sizes near `i64::MAX` panicked a debug build and, in a release
    /// build, wrapped to a sum under the cap, so the blobs were fetched.
    #[test]
    fn claimed_sizes_that_would_wrap_do_not_fit() {
        let sized = |n: i64| Digest {
            hash: Digest::of(b"x").hash,
            size_bytes: n,
        };
        let wrapping = [sized(i64::MAX), sized(i64::MAX), sized(3)];
        let why = fits(&wrapping, 5 << 30).unwrap_err();
        assert!(why.contains(&u64::MAX.to_string()), "{why}");
        assert!(fits(&[sized(1 << 20), sized(1 << 20)], 2 << 20).is_ok());
        assert!(fits(&[sized(1 << 20), sized(1 << 20)], (2 << 20) - 1).is_err());
    }

    /// Regression: `RemoteConfig`'s derived `Debug` printed header values
    /// (`authorization=Bearer ...`) for whatever logged it.
    #[test]
    fn debug_output_names_headers_but_never_their_values() {
        let config = RemoteConfig {
            url: "grpc://127.0.0.1:1".into(),
            instance: String::new(),
            headers: vec![("authorization".into(), "Bearer s3cret-token".into())],
            ca: None,
            timeout: Duration::from_secs(1),
            mode: Mode::Read,
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("authorization=<redacted>"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn a_url_that_is_not_grpc_and_a_bad_header_are_refused() {
        let config = |url: &str, headers: Vec<(String, String)>| RemoteConfig {
            url: url.into(),
            instance: String::new(),
            headers,
            ca: None,
            timeout: Duration::from_secs(1),
            mode: Mode::Read,
        };
        assert!(matches!(
            Remote::new(config("http://127.0.0.1:1", Vec::new())),
            Err(RemoteError::BadUrl { .. })
        ));
        assert!(matches!(
            Remote::new(config(
                "grpc://127.0.0.1:1",
                vec![("Bad Name".into(), "x".into())]
            )),
            Err(RemoteError::BadHeader { .. })
        ));
        assert!(Remote::new(config("grpc://127.0.0.1:1", Vec::new())).is_ok());
    }

    #[test]
    fn a_remote_that_refuses_connections_fails_within_the_timeout() {
        // Port 1 on loopback: nothing listens (connection refused).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache"), 1 << 30).unwrap();
        let remote = Remote::new(RemoteConfig {
            url: "grpc://127.0.0.1:1".into(),
            instance: String::new(),
            headers: Vec::new(),
            ca: None,
            timeout: Duration::from_secs(5),
            mode: Mode::ReadWrite,
        })
        .unwrap();
        let fetched = remote.fetch(&store, &key(), &expected(), &|_, _| true);
        assert!(fetched.is_err(), "{fetched:?}");
        assert_eq!(remote.counts().remote_misses, 1);
        assert!(remote.take_down());
        assert!(!remote.take_down(), "only the first failure warns");
    }
}
