import assert from "node:assert/strict";
import { test } from "node:test";
import { allowedSubscribers, mayPlay, mayReceive, parseRoomState, realKind } from "../dist/index.js";

const on = parseRoomState(JSON.stringify({ callId: "c", type: "audio", video: "on", live: ["her", "him"] }));
const off = parseRoomState(JSON.stringify({ callId: "c", type: "audio", video: "off", live: ["her", "him"] }));
const camera = { publisher: "him", kind: "video", mimeType: "video/VP8", source: "camera" };
const mic = { publisher: "him", kind: "audio", mimeType: "audio/opus", source: "microphone" };

test("the room's metadata is read strictly: anything unreadable is closed", () => {
  for (const raw of [undefined, "", "not json", "null", "42", JSON.stringify({ video: "ON" })]) {
    const state = parseRoomState(raw);
    assert.equal(state.video, "off", String(raw));
    assert.deepEqual(state.live, []);
  }
  assert.deepEqual(parseRoomState(JSON.stringify({ video: "on", live: ["a", 7, null, "b"] })), {
    video: "on",
    live: ["a", "b"],
    recording: false,
  });
});

test("the room's metadata says it records only when callgate wrote recording: true", () => {
  const recorded = parseRoomState(JSON.stringify({ callId: "c", type: "audio", video: "off", recording: true, live: ["her"] }));
  assert.equal(recorded.recording, true);
  for (const recording of [false, "true", 1, null, undefined]) {
    const raw = JSON.stringify({ callId: "c", type: "audio", video: "off", recording, live: ["her"] });
    assert.equal(parseRoomState(raw).recording, false, raw);
  }
  assert.equal(parseRoomState("not json").recording, false);
});

test("a camera is received only while the metadata says video is on and its publisher is live", () => {
  assert.equal(mayReceive(on, camera), true);
  assert.equal(mayReceive(off, camera), false);
  assert.equal(mayReceive({ video: "requested", live: ["him"] }, camera), false);
  assert.equal(mayReceive({ video: "on", live: ["her"] }, camera), false, "he is not live (left, removed, an old token)");
});

test("audio is received from those live whatever the video state", () => {
  assert.equal(mayReceive(off, mic), true);
  assert.equal(mayReceive({ video: "off", live: ["her"] }, mic), false);
});

test("video declared as audio is never received, whatever its source and the video state", () => {
  for (const source of ["microphone", "screen_share_audio", "camera", "unknown"]) {
    const disguised = { publisher: "him", kind: "audio", mimeType: "video/VP8", source };
    assert.equal(realKind(disguised), undefined);
    assert.equal(mayReceive(on, disguised), false, source);
  }
  assert.equal(mayReceive(on, { publisher: "him", kind: "video", mimeType: "video/VP8", source: "microphone" }), false);
  assert.equal(mayReceive(on, { publisher: "him", kind: "video", mimeType: "audio/opus", source: "camera" }), false);
});

test("a track is played only if the browser's track kind is the one declared", () => {
  assert.equal(mayPlay(off, mic, "audio"), true);
  assert.equal(mayPlay(off, mic, "video"), false);
  assert.equal(mayPlay(on, camera, "audio"), false);
});

test("only those live, but oneself, may subscribe to one's tracks", () => {
  assert.deepEqual(allowedSubscribers(on, "her"), ["him"]);
  assert.deepEqual(allowedSubscribers(parseRoomState(undefined), "her"), []);
});
