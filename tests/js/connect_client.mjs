// The official Connect-ES client (@connectrpc/connect-node) against the engine's HTTP listener, for
// tests/test_connect_clients.py. No generated code: the services come from a FileDescriptorSet read at
// run time. Reads a plan (JSON) on stdin, prints one result per call (JSON) on stdout:
//   {"baseUrl": "http://127.0.0.1:8080", "protocol": "connect" | "grpc" | "grpcweb", "httpVersion": "1.1" | "2",
//    "binary": true, "gzip": false, "descriptorSet": "/path/engine.binpb",
//    "calls": [{"service": "etf_engine.v1.Valuation", "method": "GetNav", "token": "...",
//               "request": {"fundId": "F1"}, "take": 2}]}     (take: a server stream's first messages)
//   -> [{"reply": {...}} | {"replies": [{...}, ...]} | {"error": {"code": "not_found", "message": "..."}}]
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, fromJson, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

const plan = JSON.parse(readFileSync(0, "utf8"));
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(plan.descriptorSet)));
const options = {
  baseUrl: plan.baseUrl,
  httpVersion: plan.httpVersion,
  useBinaryFormat: plan.binary,
  ...(plan.gzip ? { sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 0 } : {}),
};
const create = { connect: createConnectTransport, grpc: createGrpcTransport, grpcweb: createGrpcWebTransport };
const transport = create[plan.protocol](options);

function codeName(code) {
  // Code.NotFound -> "not_found", as the Connect protocol spells it
  return Code[code].replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase());
}

const results = [];
for (const call of plan.calls) {
  const service = registry.getService(call.service);
  const method = service.methods.find((m) => m.name === call.method);
  const client = createClient(service, transport);
  const headers = call.token ? { authorization: `Bearer ${call.token}` } : {};
  const request = fromJson(method.input, call.request ?? {});
  try {
    if (method.methodKind === "server_streaming") {
      // The streams do not end by themselves: cancel the call once it has given what was asked for.
      const cancel = new AbortController();
      const replies = [];
      try {
        for await (const reply of client[method.localName](request, { headers, signal: cancel.signal })) {
          replies.push(toJson(method.output, reply));
          if (replies.length >= (call.take ?? 1)) break;
        }
      } finally {
        cancel.abort();
      }
      results.push({ replies });
    } else {
      results.push({ reply: toJson(method.output, await client[method.localName](request, { headers })) });
    }
  } catch (e) {
    const error = ConnectError.from(e);
    results.push({ error: { code: codeName(error.code), message: error.rawMessage } });
  }
}
process.stdout.write(JSON.stringify(results));
