"""A hostile REAPI server for the remote-cache tests: it answers every
GetActionResult with the ActionResult bytes in the file ARGV[1], every
ByteStream.Read with a stream of 64 KiB chunks that never ends (more than
any digest's size, forever), and every BatchReadBlobs with status OK and
wrong data for each blob asked for, each twice, plus one not asked for.
With ARGV[2] `slow`, ByteStream.Read drips one byte every half second
instead (never more than the size, never done). It prints its loopback port, then serves
until killed. Run with the BuildGrid venv's python (it has grpcio)."""

import sys
from concurrent import futures

import time

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re

RESULT = open(sys.argv[1], "rb").read()
SLOW = sys.argv[2:] == ["slow"]
CHUNK = b"\x52" + bytes([0x80, 0x80, 0x04]) + b"\x00" * 65536  # ReadResponse{data}


def get_action_result(request, context):
    return RESULT


def batch_read_blobs(request, context):
    asked = re.BatchReadBlobsRequest.FromString(request)
    answer = re.BatchReadBlobsResponse()
    for digest in list(asked.digests) * 2:
        answer.responses.add(digest=digest, data=b"not the blob")
    answer.responses.add(digest=re.Digest(hash="0" * 64, size_bytes=4), data=b"junk")
    return answer.SerializeToString()


def read(request, context):
    while context.is_active():
        if SLOW:
            time.sleep(0.5)
            yield b"\x52\x01\x00"
        else:
            yield CHUNK


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers(
    (
        grpc.method_handlers_generic_handler(
            "build.bazel.remote.execution.v2.ActionCache",
            {"GetActionResult": grpc.unary_unary_rpc_method_handler(get_action_result)},
        ),
        grpc.method_handlers_generic_handler(
            "build.bazel.remote.execution.v2.ContentAddressableStorage",
            {"BatchReadBlobs": grpc.unary_unary_rpc_method_handler(batch_read_blobs)},
        ),
        grpc.method_handlers_generic_handler(
            "google.bytestream.ByteStream",
            {"Read": grpc.unary_stream_rpc_method_handler(read)},
        ),
    )
)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
