import assert from "node:assert/strict";
import { test } from "node:test";
import { CallgateClient, CallgateError, EventStream, backoffDelay, isEvent, isRecordingEvent } from "../dist/index.js";

// A fetch that records each request and answers with the next scripted reply.
function scripted(...replies) {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, ...init });
    const { status = 200, body, type = "application/json" } = replies.shift() ?? {};
    return new Response(body === undefined ? "" : JSON.stringify(body), { status, headers: { "content-type": type } });
  };
  return { fetch, seen };
}

test("a call is started with the token as a bearer and the body as camelCase JSON", async () => {
  const { fetch, seen } = scripted({ status: 201, body: { call: { id: "c1" }, join: {}, iceServers: [] } });
  const client = new CallgateClient({ baseUrl: "http://callgate.test/", token: "t0k", fetch });
  const started = await client.startCall(["alice"], "audio");
  assert.equal(started.call.id, "c1");
  assert.equal(seen[0].url, "http://callgate.test/api/v1/calls");
  assert.equal(seen[0].method, "POST");
  assert.equal(seen[0].headers.authorization, "Bearer t0k");
  assert.deepEqual(JSON.parse(seen[0].body), { participantIds: ["alice"], type: "audio" });
});

test("a problem answer becomes a CallgateError with its code, status and field", async () => {
  const problem = { type: "x", title: "Conflict", status: 409, code: "callee_busy", detail: "alice is busy" };
  const { fetch } = scripted({ status: 409, body: problem, type: "application/problem+json" });
  const client = new CallgateClient({ baseUrl: "http://callgate.test", token: "t", fetch });
  await assert.rejects(client.startCall(["alice"], "video"), (err) => {
    assert.ok(err instanceof CallgateError);
    assert.equal(err.code, "callee_busy");
    assert.equal(err.status, 409);
    assert.equal(err.message, "alice is busy");
    return true;
  });
});

test("an answer that is not a problem still fails, as unexpected_response", async () => {
  const { fetch } = scripted({ status: 502, body: undefined, type: "text/plain" });
  const client = new CallgateClient({ baseUrl: "http://callgate.test", token: "t", fetch });
  await assert.rejects(client.activeCalls(), (err) => err.code === "unexpected_response" && err.status === 502);
});

test("the consent steps go to their routes with the ids escaped", async () => {
  const { fetch, seen } = scripted({ body: {} }, { body: {} }, { body: {} }, { body: {} });
  const client = new CallgateClient({ baseUrl: "http://h", token: () => "fresh", fetch });
  await client.requestVideo("c 1");
  await client.acceptVideoRequest("c1", "r/1");
  await client.rejectVideoRequest("c1", "r1");
  await client.revokeVideo("c1");
  assert.deepEqual(
    seen.map((r) => `${r.method} ${r.url}`),
    [
      "POST http://h/api/v1/calls/c%201/video/requests",
      "POST http://h/api/v1/calls/c1/video/requests/r%2F1/accept",
      "POST http://h/api/v1/calls/c1/video/requests/r1/reject",
      "POST http://h/api/v1/calls/c1/video/revoke",
    ],
  );
  assert.equal(seen[0].headers.authorization, "Bearer fresh");
});

test("a report and the moderators' actions go to their routes with their bodies", async () => {
  const { fetch, seen } = scripted(...Array.from({ length: 6 }, () => ({ body: {} })));
  const client = new CallgateClient({ baseUrl: "http://h", token: "t", fetch });
  await client.reportParticipant("c1", "bob", "harassment", "he shouted");
  await client.reportParticipant("c1", "bob", "other");
  await client.moderatorRemoveParticipant("c1", "b/ob", "nudity");
  await client.suspendUser("bob", "reports");
  await client.suspendUser("bob", "a day", 86400);
  await client.auditLog({ userId: "bob", limit: 10 });
  assert.deepEqual(
    seen.map((r) => `${r.method} ${r.url} ${r.body ?? ""}`),
    [
      'POST http://h/api/v1/calls/c1/reports {"userId":"bob","reason":"harassment","text":"he shouted"}',
      'POST http://h/api/v1/calls/c1/reports {"userId":"bob","reason":"other"}',
      'POST http://h/api/v1/admin/calls/c1/remove {"userId":"b/ob","reason":"nudity"}',
      'PUT http://h/api/v1/admin/suspensions/bob {"reason":"reports"}',
      'PUT http://h/api/v1/admin/suspensions/bob {"reason":"a day","durationSeconds":86400}',
      "GET http://h/api/v1/admin/audit?userId=bob&limit=10 ",
    ],
  );
});

test("history pages are asked for with their cursor and limit", async () => {
  const { fetch, seen } = scripted({ body: { calls: [] } }, { body: { calls: [] } });
  const client = new CallgateClient({ baseUrl: "http://h", token: "t", fetch });
  await client.callHistory();
  await client.callHistory({ cursor: "abc", limit: 5 });
  assert.equal(seen[0].url, "http://h/api/v1/calls/history");
  assert.equal(seen[1].url, "http://h/api/v1/calls/history?cursor=abc&limit=5");
});

test("a rating is a PUT and a quality sample a POST", async () => {
  const { fetch, seen } = scripted({ body: {} }, { body: {} });
  const client = new CallgateClient({ baseUrl: "http://h", token: "t", fetch });
  await client.rateCall("c1", { score: 4 });
  await client.recordQualitySample("c1", { jitterMs: 1, packetLossPct: 0, rttMs: 20 });
  assert.deepEqual([seen[0].method, seen[0].url], ["PUT", "http://h/api/v1/calls/c1/rating"]);
  assert.deepEqual([seen[1].method, seen[1].url], ["POST", "http://h/api/v1/calls/c1/quality"]);
});

test("an event delivered twice reaches the handler once", () => {
  const got = [];
  const stream = new EventStream({ client: {}, onEvent: (e) => got.push(e.id) });
  const event = { id: "e1", type: "call.incoming", callId: "c1", at: "now", data: {} };
  assert.equal(stream.deliver(event), true);
  assert.equal(stream.deliver({ ...event }), false);
  assert.equal(stream.deliver({ ...event, id: "e2" }), true);
  assert.deepEqual(got, ["e1", "e2"]);
});

test("only the most recent ids are remembered", () => {
  const got = [];
  const stream = new EventStream({ client: {}, remember: 2, onEvent: (e) => got.push(e.id) });
  for (const id of ["a", "b", "c", "a"]) stream.deliver({ id, type: "t", at: "", data: {} });
  assert.deepEqual(got, ["a", "b", "c", "a"]);
});

test("reconnect delays double up to the cap, with jitter of at most half", () => {
  const low = () => 0;
  const high = () => 1;
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, 500, 3000, high)), [500, 1000, 2000, 3000]);
  assert.deepEqual([0, 1, 2, 10].map((n) => backoffDelay(n, 500, 3000, low)), [250, 500, 1000, 1500]);
});

test("the stream opens with a ticket, catches up, hands on events and reconnects after a drop", async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      sockets.push(this);
      queueMicrotask(() => this.onopen?.());
    }
    close() {}
  }
  let tickets = 0;
  let catchUps = 0;
  const client = {
    baseUrl: "https://calls.example",
    eventTicket: async () => ({ ticket: `tk${++tickets}`, expiresAt: "" }),
    activeCalls: async () => ({ calls: [{ id: `live${catchUps}` }] }),
  };
  const events = [];
  const stream = new EventStream({
    client,
    WebSocket: FakeSocket,
    minDelayMs: 1,
    maxDelayMs: 2,
    onEvent: (e) => events.push(e.id),
    onCatchUp: () => catchUps++,
  }).start();
  await waitFor(() => catchUps === 1);
  assert.equal(sockets[0].url, "wss://calls.example/api/v1/events?ticket=tk1");
  const event = JSON.stringify({ id: "e1", type: "call.incoming", callId: "c", at: "", data: {} });
  sockets[0].onmessage({ data: JSON.stringify({ type: "heartbeat", at: "" }) });
  sockets[0].onmessage({ data: event });
  sockets[0].onclose();
  await waitFor(() => catchUps === 2);
  assert.equal(sockets[1].url, "wss://calls.example/api/v1/events?ticket=tk2");
  sockets[1].onmessage({ data: event });
  assert.deepEqual(events, ["e1"]);
  stream.close();
});

async function waitFor(condition) {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition(), "condition reached");
}

test("the recording steps go to their routes, the newcomer's consent in the body", async () => {
  const view = { state: "off", canAnswer: false };
  const { fetch, seen } = scripted(
    { body: view },
    { status: 201, body: { request: { id: "r1", requestedBy: "bob", expiresAt: "" } } },
    { body: view },
    { body: view },
    { body: view },
    { body: { recordings: [{ id: "rec1", status: "ready" }] } },
    { body: { id: "rec/1", status: "deleted" } },
    { body: { url: "https://bucket.example/r.ogg?X-Amz-Signature=s", expiresAt: "2026-12-07T22:05:00Z" } },
    { body: { call: {}, join: {}, iceServers: [] } },
    { body: { call: {}, join: {}, iceServers: [] } },
  );
  const client = new CallgateClient({ baseUrl: "http://h", token: "t", fetch });
  assert.equal((await client.recordingState("c 1")).state, "off");
  assert.equal((await client.requestRecording("c1")).request.id, "r1");
  await client.acceptRecordingRequest("c1", "r/1");
  await client.rejectRecordingRequest("c1", "r1");
  await client.stopRecording("c1");
  assert.equal((await client.listRecordings("c1")).recordings[0].status, "ready");
  assert.equal((await client.deleteRecording("rec/1")).status, "deleted");
  assert.equal((await client.recordingLink("rec 2")).expiresAt, "2026-12-07T22:05:00Z");
  await client.acceptCall("c1", { recording: true });
  await client.joinCall("c1", { video: false, recording: false });
  assert.deepEqual(
    seen.map((r) => `${r.method} ${r.url} ${r.body ?? ""}`),
    [
      "GET http://h/api/v1/calls/c%201/recording ",
      "POST http://h/api/v1/calls/c1/recording/requests ",
      "POST http://h/api/v1/calls/c1/recording/requests/r%2F1/accept ",
      "POST http://h/api/v1/calls/c1/recording/requests/r1/reject ",
      "POST http://h/api/v1/calls/c1/recording/stop ",
      "GET http://h/api/v1/calls/c1/recordings ",
      "DELETE http://h/api/v1/recordings/rec%2F1/file ",
      "GET http://h/api/v1/recordings/rec%202/link ",
      'POST http://h/api/v1/calls/c1/accept {"recording":true}',
      'POST http://h/api/v1/calls/c1/join {"video":false,"recording":false}',
    ],
  );
  assert.ok(seen.every((r) => r.headers.authorization === "Bearer t"));
});

test("a recording downloads as a Blob with the token; a refusal is a CallgateError", async () => {
  const bytes = new Uint8Array([0x4f, 0x67, 0x67, 0x53, 0, 2]); // "OggS"
  const seen = [];
  const replies = [
    new Response(bytes, { status: 200, headers: { "content-type": "audio/ogg" } }),
    new Response(JSON.stringify({ status: 409, code: "recording_not_ready", detail: "still being made" }), {
      status: 409,
      headers: { "content-type": "application/problem+json" },
    }),
  ];
  const fetch = async (url, init) => (seen.push({ url, ...init }), replies.shift());
  const client = new CallgateClient({ baseUrl: "http://h", token: async () => "tk", fetch });
  const blob = await client.downloadRecording("rec1");
  assert.ok(blob instanceof Blob);
  assert.equal(blob.type, "audio/ogg");
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), bytes);
  assert.equal(`${seen[0].method} ${seen[0].url}`, "GET http://h/api/v1/recordings/rec1/file");
  assert.equal(seen[0].headers.authorization, "Bearer tk");
  await assert.rejects(client.downloadRecording("rec2"), (err) => {
    assert.ok(err instanceof CallgateError);
    assert.equal(err.code, "recording_not_ready");
    assert.equal(err.status, 409);
    return true;
  });
});

test("the recording events reach the handler and are told apart by type", () => {
  const got = [];
  const stream = new EventStream({ client: {}, onEvent: (e) => got.push(e) });
  const events = [
    ["recording.requested", { request: { id: "r1", requestedBy: "bob", expiresAt: "" } }],
    ["recording.on", { recording: "on" }],
    ["recording.off", { recording: "off" }],
    ["recording.declined", { requestId: "r1" }],
    ["recording.expired", { requestId: "r2" }],
    ["recording.ready", { recordingId: "rec1", durationMs: 4200, sizeBytes: 31337 }],
    ["recording.failed", { recordingId: "rec2" }],
    ["video.on", { video: "on" }],
  ];
  events.forEach(([type, data], n) => stream.deliver({ id: `e${n}`, type, callId: "c1", at: "", data }));
  assert.deepEqual(
    got.map((e) => e.type),
    events.map(([type]) => type),
  );
  assert.deepEqual(
    got.map((e) => isRecordingEvent(e)),
    [true, true, true, true, true, true, true, false],
  );
  const ready = got.find((e) => isEvent(e, "recording.ready"));
  assert.deepEqual(ready.data, { recordingId: "rec1", durationMs: 4200, sizeBytes: 31337 });
  assert.equal(got.filter((e) => isEvent(e, "recording.requested"))[0].data.request.requestedBy, "bob");
});
