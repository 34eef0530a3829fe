// The reference web app: the TypeScript client for callgate, livekit-client
// for the media. It shows only what the API and LiveKit tell this participant.
// What it receives and plays follows the room's metadata (`follow`, `judge`,
// `play`, `videoOff` below, with the rules of clients/ts/src/media.ts); the
// call's view (people.ts), its timer (timer.ts) and how an incoming call is
// noticed (ring.ts) only show things.
import {
  ConnectionQuality,
  ConnectionState,
  LocalTrack,
  Participant,
  RemoteParticipant,
  RemoteTrack,
  RemoteTrackPublication,
  Room,
  RoomEvent,
  Track,
} from "livekit-client";
import {
  allowedSubscribers,
  Call,
  CallgateClient,
  CallgateError,
  CallgateEvent,
  CallWithJoin,
  CLOSED,
  EventStream,
  isEvent,
  mayPlay,
  mayReceive,
  parseRoomState,
  Publication,
  Recording,
  RecordingConsent,
  ReportReason,
  RoomState,
} from "../../clients/ts/src/index";
import { avatar, People, Quality } from "./people";
import { RecordingBar, RecordingList } from "./recordings";
import { CallNotice, Ringtone } from "./ring";
import { CallTimer, duration } from "./timer";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const SCREENS = ["signin", "home", "incoming", "call", "ended", "history"] as const;
type Screen = (typeof SCREENS)[number];

interface Session { token: string; userId: string; name: string }
let session: Session | undefined;
let client: CallgateClient | undefined;
let stream: EventStream | undefined;
let current:
  | {
      call: Call;
      room?: Room;
      // Its room is being joined (or was): while her own call rings there is no room to join yet.
      joining: boolean;
      connected: boolean;
      requestId?: string;
      // Why the call ends here, once she hung up (callgate may put her out of the room first).
      leaving?: string;
      // What the room's metadata (only callgate writes it) says; what plays follows it.
      state: RoomState;
      // Whether the call records, as callgate last said; the request this page said yes to.
      recording: RecordingConsent["state"];
      recordingAnswered?: string;
    }
  | undefined;
let incoming: Call | undefined;
let qualityTimer: ReturnType<typeof setInterval> | undefined;
let endedCallId: string | undefined;
let waitingRating: { callId: string; score: number } | undefined;
const people = new People($("people"), $("self"), $<HTMLVideoElement>("local-video"));
const timer = new CallTimer($("call-timer"));
const ringtone = new Ringtone();
const notice = new CallNotice();
const recordingBar = new RecordingBar();
const recordingList = new RecordingList({ download, delete: deleteRecording });
let recordingPoll: ReturnType<typeof setTimeout> | undefined;

function show(screen: Screen) {
  for (const s of SCREENS) $(`screen-${s}`).hidden = s !== screen;
  $("nav").hidden = screen === "signin";
  document.body.dataset.screen = screen;
  if (screen === "home") offerNotifications();
  const heading = $(`screen-${screen}`).querySelector("h1");
  heading?.setAttribute("tabindex", "-1");
  heading?.focus();
}

function toast(text: string) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => (t.hidden = true), 4000);
}

function explain(err: unknown) {
  if (err instanceof CallgateError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

function nameOf(call: Call, userId: string) {
  return call.participants.find((p) => p.userId === userId)?.name ?? userId;
}

function others(call: Call) {
  return call.participants.filter((p) => p.userId !== session?.userId);
}

// ---------------------------------------------------------------- sign-in

async function signIn(form: HTMLFormElement) {
  const data = new FormData(form);
  const body = { userId: String(data.get("userId")), name: String(data.get("name") || data.get("userId")), gender: String(data.get("gender")) };
  const response = await fetch("/app/dev-token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) return toast("Sign-in refused: check the user id");
  const { token } = await response.json();
  session = { token, userId: body.userId, name: body.name };
  sessionStorage.setItem("callgate.session", JSON.stringify(session));
  start();
}

function start() {
  if (!session) return show("signin");
  const token = session.token;
  client = new CallgateClient({ baseUrl: location.origin, token });
  // On a phone's narrow screen only a screen reader says "Signed in as".
  const prefix = document.createElement("span");
  prefix.className = "wide";
  prefix.textContent = "Signed in as ";
  $("whoami").replaceChildren(prefix, session.name);
  stream = client.events({ onEvent, onCatchUp: ({ calls }) => catchUp(calls) }).start();
  show("home");
}

function signOut() {
  stopRinging();
  incoming = undefined;
  stream?.close();
  sessionStorage.removeItem("callgate.session");
  session = undefined;
  show("signin");
}

// After a (re)connect: a ringing call to us, or the call we are in, may have
// changed while the stream was closed.
function catchUp(calls: Call[]) {
  const mine = current && calls.find((c) => c.id === current!.call.id);
  if (current && !mine) return finish("The call ended.");
  if (current) void syncRecording();
  // Answered while the stream was closed: her room, now.
  if (mine && mine.state !== "ringing") void answered(mine);
  const ringing = calls.find((c) => c.state === "ringing" && c.initiatorId !== session?.userId);
  if (!current && ringing) ring(ringing);
}

// ----------------------------------------------------------------- events

/** The types of the last events this page received, oldest first (what a failing browser test prints). */
const lastEvents: string[] = [];

function onEvent(event: CallgateEvent) {
  lastEvents.push(`${event.type}${event.callId ? `@${event.callId.slice(0, 8)}` : ""}`);
  if (lastEvents.length > 30) lastEvents.shift();
  const call = (event.data.call as Call | undefined) ?? undefined;
  const mine = current && event.callId === current.call.id;
  const ringingHere = incoming !== undefined && event.callId === incoming.id;
  switch (event.type) {
    case "call.incoming":
      if (call && !current) ring(call);
      break;
    case "call.accepted":
      if (!mine || !call) break;
      noteCall(call);
      if (!current!.connected) status("Connecting…");
      void answered(call);
      break;
    case "call.declined": {
      if (!mine) break;
      const who = nameOf(current!.call, String(event.data.by ?? ""));
      // In a group the call goes on without whoever declined.
      if (!call || call.state === "ended") return void finish(`${who} declined.`);
      noteCall(call);
      toast(`${who} declined.`);
      break;
    }
    case "participant.joined":
    case "participant.left":
    case "participant.reconnecting":
    case "participant.invited":
      if (mine && call) noteCall(call);
      break;
    case "call.ring_stopped":
      if (ringingHere) stopIncoming(stoppedWhy(String(event.data.reason ?? "")));
      break;
    case "call.cancelled":
    case "call.missed":
      if (ringingHere) stopIncoming(`Missed call from ${nameOf(incoming!, incoming!.initiatorId)}`);
      if (mine) finish(event.type === "call.missed" ? "No answer." : "The call was cancelled.");
      break;
    case "call.ended":
      if (waitingRating && waitingRating.callId === event.callId) {
        const { callId, score } = waitingRating;
        waitingRating = undefined;
        void sendRating(callId, score);
      }
      if (mine) finish(current!.connected ? "The call ended." : "The call ended before it started.");
      if (ringingHere) stopIncoming("");
      break;
    case "video.requested":
      if (mine) onVideoRequested(event.data.request as { id: string; requestedBy: string });
      break;
    case "video.on":
      if (mine) consentNote("Video is on."), setVideoUi(true);
      break;
    case "video.off":
      if (mine) consentNote("Video is off."), videoOff(), setVideoUi(false);
      break;
    case "video.declined":
      if (mine) consentNote("Your request for video was declined.");
      break;
    case "video.expired":
      if (mine) consentNote("Your request for video expired without an answer.");
      break;
    default:
      onRecordingEvent(event, Boolean(mine));
  }
}

// ------------------------------------------------------------------ calls

async function placeCall(form: HTMLFormElement) {
  const data = new FormData(form);
  // Several people: their user ids separated by commas.
  const callees = String(data.get("callee"))
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean);
  const type = data.get("type") === "video" ? "video" : "audio";
  try {
    // While it rings callgate hands STUN alone (no relay for a call nobody
    // answers): she waits on the call's screen, and joins its room with a
    // fresh token (TURN included) once someone answers (`answered`).
    const { call } = await client!.startCall(callees, type);
    open(call, `Calling ${callees.join(", ")}…`);
    // An answer whose event came before this page knew the call is read here.
    const now = await client!.getCall(call.id).catch(() => undefined);
    if (now && now.state !== "ringing") void answered(now);
  } catch (err) {
    $("home-status").textContent = `Could not call: ${explain(err)}`;
  }
}

// ---------------------------------------------------------------- ringing

function ring(call: Call) {
  incoming = call;
  const caller = nameOf(call, call.initiatorId);
  avatar($("incoming-avatar"), call.initiatorId, caller);
  $("incoming-who").textContent = `${caller} is calling (${call.type})`;
  const also = others(call).filter((p) => p.userId !== call.initiatorId).map((p) => p.name ?? p.userId);
  $("incoming-also").textContent = also.length ? `With ${also.join(", ")}` : "";
  // Being recorded: answering stops it unless one consents here, as one answers.
  ($("incoming-record-ok") as HTMLInputElement).checked = false;
  $("incoming-recording").hidden = call.recording !== "on";
  show("incoming");
  document.title = `${caller} is calling · callgate`;
  ringtone.start();
  noticeIfHidden();
}

/** While it rings, a tab that is (or goes) in the background shows a notification. */
function noticeIfHidden() {
  if (!incoming) return;
  const caller = nameOf(incoming, incoming.initiatorId);
  notice.show(`${caller} is calling`, `${incoming.type === "video" ? "Video" : "Audio"} call: open callgate to answer`, `call-${incoming.id}`);
}

function stopRinging() {
  ringtone.stop();
  notice.close();
  document.title = "callgate";
}

/** It stopped ringing here without an answer from this page (a toast says why, if anything). */
function stopIncoming(why: string) {
  stopRinging();
  incoming = undefined;
  show(current ? "call" : "home");
  if (why) toast(why);
}

function stoppedWhy(reason: string) {
  const caller = incoming ? nameOf(incoming, incoming.initiatorId) : "";
  if (reason === "answered") return "Answered on another device";
  if (reason === "declined") return "Declined on another device";
  return `Missed call from ${caller}`;
}

async function answer() {
  const call = incoming!;
  incoming = undefined;
  stopRinging();
  try {
    const keep = call.recording === "on" && ($("incoming-record-ok") as HTMLInputElement).checked;
    await enter(await client!.acceptCall(call.id, keep ? { recording: true } : {}), "Connecting…");
  } catch (err) {
    show("home");
    toast(`Could not answer: ${explain(err)}`);
  }
}

async function decline() {
  const call = incoming!;
  incoming = undefined;
  stopRinging();
  show("home");
  await client!.declineCall(call.id).catch((err) => toast(explain(err)));
}

/** The call's screen, before its room: whom she calls, and who answers, while it rings. */
function open(call: Call, note: string) {
  current = { call, joining: false, connected: false, state: CLOSED, recording: "off" };
  people.reset(call, session!.userId);
  title(call);
  status(note);
  consentNote("");
  setVideoUi(false);
  $("ask-video").hidden = false;
  recordingBar.clear();
  show("call");
}

/** Into a call she answered (or joined): its screen and its room at once. */
async function enter(started: CallWithJoin, note: string) {
  open(started.call, note);
  current!.joining = true;
  await connect(started.join, started.iceServers);
}

/**
 * Her call was answered: a fresh token, whose ICE servers now carry TURN
 * (callgate hands none for a call nobody answered), and into its room. Once.
 */
async function answered(call: Call) {
  if (!current || current.call.id !== call.id || current.joining) return;
  current.joining = true;
  try {
    const { join, iceServers } = await client!.callToken(call.id);
    if (current?.call.id === call.id) await connect(join, iceServers);
  } catch (err) {
    if (current?.call.id === call.id) status(`Could not connect: ${explain(err)}`);
  }
}

async function connect(join: CallWithJoin["join"], iceServers: CallWithJoin["iceServers"]) {
  // Nothing is subscribed by itself: each publication is judged against the
  // room's metadata (clients/ts/src/media.ts), again whenever it changes.
  const room = new Room({ adaptiveStream: false, dynacast: false });
  current!.room = room;
  room
    .on(RoomEvent.TrackPublished, (pub, participant) => judge(pub, participant))
    .on(RoomEvent.ParticipantConnected, (p) => p.trackPublications.forEach((pub) => judge(pub, p)))
    .on(RoomEvent.TrackSubscribed, (track, pub, participant) => play(track, pub, participant))
    .on(RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => people.release(el) || el.remove()))
    .on(RoomEvent.ParticipantPermissionsChanged, (_prev, participant) => {
      if (participant === room.localParticipant) void onRights();
    })
    .on(RoomEvent.RoomMetadataChanged, () => follow(room))
    .on(RoomEvent.ParticipantConnected, () => {
      current!.connected = true;
      status("Connected");
    })
    .on(RoomEvent.Disconnected, () => current?.room === room && finish(current.leaving ?? "Disconnected."));
  watch(room);
  await room.connect(join.url, join.token, { autoSubscribe: false, rtcConfig: { iceServers: iceServers as RTCIceServer[] } });
  // The call ended while the room was being joined.
  if (current?.room !== room) return;
  // Who may receive our tracks is set before we publish any.
  follow(room);
  if (room.remoteParticipants.size > 0) (current.connected = true), status("Connected");
  room.remoteParticipants.forEach((p) => seen(p));
  networkOf(room.localParticipant);
  if (current.connected) void connected();
  await room.localParticipant.setMicrophoneEnabled(true);
  people.muted(room.localParticipant.identity, !room.localParticipant.isMicrophoneEnabled);
  qualityTimer = setInterval(() => void sampleQuality(), 5000);
}

// ------------------------------------------------------------- call view
//
// What the page shows of the people in the call: LiveKit's presence, active
// speakers, mute states and connection quality, and callgate's view of the
// call. None of it decides what is received or played.

function watch(room: Room) {
  const mine = () => current?.room === room;
  room
    .on(RoomEvent.ParticipantConnected, (p) => {
      if (!mine()) return;
      seen(p);
      void connected();
    })
    .on(RoomEvent.ParticipantDisconnected, (p) => mine() && people.present(p.identity, false))
    .on(RoomEvent.ActiveSpeakersChanged, (speakers) => mine() && people.speaking(speakers.map((p) => p.identity)))
    .on(RoomEvent.ConnectionQualityChanged, (quality: ConnectionQuality, p) => mine() && people.quality(p.identity, quality as Quality))
    .on(RoomEvent.TrackPublished, (_pub, p) => mine() && mic(p))
    .on(RoomEvent.TrackUnpublished, (_pub, p) => mine() && mic(p))
    .on(RoomEvent.TrackMuted, (_pub, p) => mine() && mic(p))
    .on(RoomEvent.TrackUnmuted, (_pub, p) => mine() && mic(p))
    .on(RoomEvent.LocalTrackPublished, (_pub, p) => mine() && mic(p));
}

/** Someone is in the room: their tile shows them present, and their microphone. */
function seen(p: RemoteParticipant) {
  people.present(p.identity, true);
  mic(p);
  networkOf(p);
}

/**
 * What LiveKit last said of someone's network, for their tile: it says it
 * once as they join and then only on a change, which may come before their
 * tile exists (they answered before callgate's view of the call arrived).
 */
function networkOf(p: Participant) {
  if (p.connectionQuality !== "unknown") people.quality(p.identity, p.connectionQuality as Quality);
}

/** Whether someone's microphone is on, as LiveKit announces it (muted, or none published). */
function mic(p: Participant) {
  people.muted(p.identity, !p.isMicrophoneEnabled);
}

/**
 * Someone else is in the room: the timer starts (from now until callgate's
 * record of when the call became active arrives), and the call is read
 * again for everyone's status.
 */
async function connected() {
  const call = current?.call;
  if (!call) return;
  if (!timer.running) timer.start(Date.now());
  void syncRecording();
  const fresh = await client!.getCall(call.id).catch(() => undefined);
  if (fresh && current?.call.id === fresh.id) noteCall(fresh);
}

/** The call as callgate last described it. */
function noteCall(call: Call) {
  if (!current || current.call.id !== call.id) return;
  current.call = call;
  title(call);
  people.update(call);
  current.room?.remoteParticipants.forEach(networkOf);
  if (call.connectedAt) timer.start(Date.parse(call.connectedAt));
}

function facts(pub: RemoteTrackPublication, participant: RemoteParticipant): Publication {
  return { publisher: participant.identity, kind: pub.kind, mimeType: pub.mimeType, source: pub.source };
}

/** The room's metadata changed (or we just joined): follow what it says. */
function follow(room: Room) {
  if (current?.room !== room) return;
  const state = parseRoomState(room.metadata);
  current.state = state;
  // LiveKit lets only those live in the call subscribe to what we publish:
  // a connection made with someone's old token after they left gets nothing.
  const allowed = allowedSubscribers(state, room.localParticipant.identity);
  room.localParticipant.setTrackSubscriptionPermissions(
    false,
    allowed.map((participantIdentity) => ({ participantIdentity, allowAll: true })),
  );
  room.remoteParticipants.forEach((p) => p.trackPublications.forEach((pub) => judge(pub, p)));
  setVideoUi(state.video === "on");
  // The red dot follows the metadata too (only callgate writes it): an
  // event lost on the way, or a newcomer's no, still shows.
  if (state.recording !== (current.recording === "on")) {
    if (state.recording) showRecording({ state: "on", canAnswer: false });
    else void syncRecording();
  }
}

/** Video is off, whoever said so first (our own revoke, an event): stop receiving it now. */
function videoOff() {
  const room = current?.room;
  if (!current || !room) return;
  current.state = { ...current.state, video: "off" };
  room.remoteParticipants.forEach((p) => p.trackPublications.forEach((pub) => judge(pub, p)));
}

function judge(pub: RemoteTrackPublication, participant: RemoteParticipant) {
  if (!current) return;
  const wanted = mayReceive(current.state, facts(pub, participant));
  if (pub.isDesired !== wanted) pub.setSubscribed(wanted);
}

function play(track: RemoteTrack, pub: RemoteTrackPublication, participant: RemoteParticipant) {
  if (!current || !mayPlay(current.state, facts(pub, participant), track.mediaStreamTrack.kind)) {
    // A track whose media is not what it said, or no longer allowed.
    pub.setSubscribed(false);
    return;
  }
  if (track.kind === Track.Kind.Video) track.attach(people.videoFor(participant.identity, pub.source));
  else $("audio-sink").appendChild(track.attach());
}

function title(call: Call) {
  $("call-title").textContent = others(call).map((p) => p.name ?? p.userId).join(", ");
}

function status(text: string) {
  $("call-status").textContent = text;
}

/** Hangs up: a call of two ends; from a group one leaves, and it goes on for the others. */
async function hangUp() {
  const call = current?.call;
  if (!call) return;
  const group = call.participants.length > 2;
  const why = group ? "You left the call." : "You hung up.";
  current!.leaving = why;
  await (group ? client!.leaveCall(call.id) : client!.endCall(call.id)).catch((err) => toast(explain(err)));
  finish(why);
}

async function finish(why: string) {
  if (!current) return;
  const { call, room, connected } = current;
  current = undefined;
  clearInterval(qualityTimer);
  clearTimeout(recordingPoll);
  recordingBar.clear();
  const lasted = timer.stop();
  await room?.disconnect();
  people.clear();
  $("audio-sink").replaceChildren();
  $("ended-why").textContent = why;
  $("ended-length").textContent = lasted > 0 ? `It lasted ${duration(lasted)}.` : "";
  endedCallId = call.id;
  $("rating-form").hidden = !connected;
  offerReport(call);
  recordingList.hide();
  show(connected ? "ended" : "home");
  if (!connected) toast(why);
  else void listRecordings(call.id);
}

async function rate(form: HTMLFormElement) {
  const score = Number(new FormData(form).get("score"));
  show("home");
  if (endedCallId) await sendRating(endedCallId, score);
}

/**
 * A call is rated once it has ended: one she left goes on for the others,
 * and her rating waits for its `call.ended` (`waitingRating`).
 */
async function sendRating(callId: string, score: number) {
  try {
    await client!.rateCall(callId, { score });
    toast("Thanks for the rating");
  } catch (err) {
    if (!(err instanceof CallgateError) || err.code !== "call_not_ended") return toast(explain(err));
    waitingRating = { callId, score };
    toast("Thanks: your rating is sent when the call ends");
  }
}

/** After a call: anyone else who was in it may be reported (never told to them). */
function offerReport(call: Call) {
  const who = $<HTMLSelectElement>("report-who");
  who.replaceChildren(
    ...others(call).map((p) => {
      const option = document.createElement("option");
      option.value = p.userId;
      option.textContent = p.name ?? p.userId;
      return option;
    }),
  );
  $<HTMLFormElement>("report-form").reset();
  $<HTMLDetailsElement>("report").open = false;
  $("report").hidden = who.options.length === 0;
}

async function report(form: HTMLFormElement) {
  if (!endedCallId) return;
  const data = new FormData(form);
  const text = String(data.get("text") ?? "").trim();
  const reason = String(data.get("reason")) as ReportReason;
  try {
    await client!.reportParticipant(endedCallId, String(data.get("userId")), reason, text || undefined);
    $<HTMLDetailsElement>("report").open = false;
    $("report").hidden = true;
    toast("Thank you: your report was sent");
  } catch (err) {
    toast(explain(err));
  }
}

// -------------------------------------------------------------- consent

function consentNote(text: string) {
  const box = $("consent");
  box.replaceChildren();
  if (!text) return;
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  box.appendChild(p);
}

async function askForVideo() {
  const call = current!.call;
  try {
    const { request } = await client!.requestVideo(call.id);
    if (current?.call.id !== call.id) return;
    current.requestId = request.id;
    const view = await client!.videoState(call.id);
    consentNote(view.state === "on" ? "Video is on." : "Asked — waiting for an answer.");
  } catch (err) {
    consentNote(`Could not ask for video: ${explain(err)}`);
  }
}

function onVideoRequested(request: { id: string; requestedBy: string }) {
  const call = current!.call;
  const box = $("consent");
  box.replaceChildren();
  const prompt = document.createElement("div");
  prompt.className = "prompt";
  const text = document.createElement("span");
  text.textContent = `${nameOf(call, request.requestedBy)} would like to turn on video`;
  const allow = document.createElement("button");
  allow.className = "primary";
  allow.textContent = "Allow";
  allow.onclick = () => answerRequest(request.id, true);
  const notNow = document.createElement("button");
  notNow.textContent = "Not now";
  notNow.onclick = () => answerRequest(request.id, false);
  prompt.append(text, allow, notNow);
  box.appendChild(prompt);
  allow.focus();
}

async function answerRequest(requestId: string, allow: boolean) {
  const call = current!.call;
  try {
    const view = allow ? await client!.acceptVideoRequest(call.id, requestId) : await client!.rejectVideoRequest(call.id, requestId);
    // In a group an answer is sealed until everyone asked has answered: a
    // yes may leave the request open, and the outcome says nothing of who.
    const note =
      view.state === "on" ? "Video is on."
      : !allow ? "You said not now."
      : view.state === "requested" ? "You allowed it — waiting for the others."
      : "Video stays off.";
    consentNote(note);
    setVideoUi(view.state === "on");
  } catch (err) {
    consentNote(explain(err));
  }
}

async function revoke() {
  const call = current!.call;
  // Nothing of anyone's video plays from the moment she asks.
  videoOff();
  await client!.revokeVideo(call.id).then(() => (consentNote("Video is off."), setVideoUi(false)), (err) => toast(explain(err)));
}

// The buttons follow whether video is on; what plays follows the room's
// metadata (`follow`), and rights come from LiveKit.
function setVideoUi(on: boolean) {
  $("ask-video").hidden = on;
  $("video-off").hidden = !on;
  if (!on) {
    const lp = current?.room?.localParticipant;
    void lp?.setCameraEnabled(false).catch(() => undefined);
    void lp?.setScreenShareEnabled(false).catch(() => undefined);
    pressed("camera", false);
    pressed("screen", false);
    people.selfVideo(false);
  }
}

async function onRights() {
  const room = current?.room;
  if (!room) return;
  const sources = room.localParticipant.permissions?.canPublishSources ?? [];
  const camera = sources.includes(1 /* TrackSource.CAMERA */);
  const screen = sources.includes(3 /* TrackSource.SCREEN_SHARE */);
  $<HTMLButtonElement>("camera").disabled = !camera;
  $<HTMLButtonElement>("screen").disabled = !screen;
  if (camera && !room.localParticipant.isCameraEnabled) await toggleCamera();
}

async function toggleCamera() {
  const lp = current?.room?.localParticipant;
  if (!lp) return;
  const on = !lp.isCameraEnabled;
  try {
    const pub = await lp.setCameraEnabled(on);
    pressed("camera", on);
    const track = pub?.track as LocalTrack | undefined;
    if (on && track) track.attach($<HTMLVideoElement>("local-video"));
    people.selfVideo(on && track !== undefined);
  } catch (err) {
    toast(`Camera: ${explain(err)}`);
  }
}

async function toggleScreen() {
  const lp = current?.room?.localParticipant;
  if (!lp) return;
  const on = !lp.isScreenShareEnabled;
  await lp.setScreenShareEnabled(on).then(() => pressed("screen", on), (err) => toast(`Screen share: ${explain(err)}`));
}

async function toggleMute() {
  const lp = current?.room?.localParticipant;
  if (!lp) return;
  const muted = lp.isMicrophoneEnabled;
  const callId = current!.call.id;
  await lp.setMicrophoneEnabled(!muted);
  pressed("mute", muted);
  people.muted(lp.identity, muted);
  await client!.updateMyMedia(callId, { audioEnabled: !muted }).catch(() => undefined);
}

function pressed(id: string, on: boolean) {
  $(id).setAttribute("aria-pressed", String(on));
}

// ------------------------------------------------------------ recording
//
// Recorded only while everyone present says yes (callgate decides; the
// page shows what it says). Whoever asks consents by asking; the others see
// the prompt; anyone stops it. Nobody is told who said no.

/** Reads where recording stands and shows it (after joining, a reconnect, an answer). */
async function syncRecording() {
  const call = current?.call;
  if (!call) return;
  try {
    const view = await client!.recordingState(call.id);
    if (current?.call.id === call.id) showRecording(view);
  } catch {
    // Recording off on this server (or the call gone): nothing to show.
  }
}

function showRecording(view: RecordingConsent) {
  if (!current) return;
  const was = current.recording;
  current.recording = view.state;
  recordingBar.state(view.state);
  clearTimeout(recordingPoll);
  const request = view.request ?? undefined;
  if (view.state === "on") {
    recordingBar.note("");
  } else if (view.state === "requested" && request) {
    if (request.requestedBy === session?.userId) {
      recordingBar.note("You asked to record — waiting for everyone to answer.", { label: "Cancel request", onClick: stopRecording });
    } else if (current.recordingAnswered === request.id) {
      recordingBar.note("You allowed it — waiting for the others.");
    } else if (view.canAnswer) {
      recordingBar.prompt(request.id, nameOf(current.call, request.requestedBy), (allow) => void answerRecording(request.id, allow));
    }
    // Only the one who asked hears of a no, and nobody of a request taken
    // back: read again until it is decided.
    if (request.requestedBy !== session?.userId) recordingPoll = setTimeout(() => void syncRecording(), 4000);
  } else if (was !== "off") {
    recordingBar.note(was === "on" ? "Recording stopped." : "The call is not being recorded.");
  }
}

function onRecordingEvent(event: CallgateEvent, mine: boolean) {
  if (isEvent(event, "recording.ready") || isEvent(event, "recording.failed")) {
    // Those who were in the call are told; the ended screen lists it.
    if (event.callId && event.callId === endedCallId && document.body.dataset.screen === "ended") void listRecordings(event.callId);
    else if (mine) toast(event.type === "recording.ready" ? "A recording of this call is ready: it is listed when the call ends." : "A recording of this call failed.");
    return;
  }
  if (!mine || !current) return;
  if (isEvent(event, "recording.requested")) {
    const { request } = event.data;
    showRecording({ state: "requested", request, canAnswer: request.requestedBy !== session?.userId });
  } else if (isEvent(event, "recording.on")) {
    showRecording({ state: "on", canAnswer: false });
  } else if (isEvent(event, "recording.off")) {
    showRecording({ state: "off", canAnswer: false });
  } else if (isEvent(event, "recording.declined")) {
    current.recording = "off";
    recordingBar.state("off");
    recordingBar.note("Your request to record was declined.");
  } else if (isEvent(event, "recording.expired")) {
    current.recording = "off";
    recordingBar.state("off");
    recordingBar.note("The request to record expired without an answer.");
  }
}

async function askToRecord() {
  const call = current!.call;
  try {
    await client!.requestRecording(call.id);
    const view = await client!.recordingState(call.id);
    showRecording(view);
  } catch (err) {
    const cooldown = err instanceof CallgateError && err.code === "recording_request_cooldown";
    recordingBar.note(cooldown ? "Your last request was declined: you can ask again in a little while." : `Could not ask to record: ${explain(err)}`);
  }
  recordingBar.focus();
}

async function answerRecording(requestId: string, allow: boolean) {
  const call = current!.call;
  try {
    const view = allow ? await client!.acceptRecordingRequest(call.id, requestId) : await client!.rejectRecordingRequest(call.id, requestId);
    if (current?.call.id !== call.id) return;
    current.recordingAnswered = requestId;
    // In a group an answer is sealed until everyone has answered; the outcome says nothing of who.
    if (!allow) {
      current.recording = view.state;
      recordingBar.state(view.state);
      recordingBar.note("You didn't allow it: the call is not recorded.");
    } else {
      showRecording(view);
    }
  } catch (err) {
    recordingBar.note(explain(err));
  }
  recordingBar.focus();
}

/** Stops it (anyone may, at any time); while it is asked, withdraws or says no. */
async function stopRecording() {
  const call = current?.call;
  if (!call) return;
  try {
    showRecording(await client!.stopRecording(call.id));
  } catch (err) {
    recordingBar.note(`Could not stop recording: ${explain(err)}`);
  }
  recordingBar.focus();
}

/** The ended call's recordings; read again while one is being made (and on `recording.ready`). */
async function listRecordings(callId: string) {
  clearTimeout(recordingPoll);
  const stillHere = () => endedCallId === callId && document.body.dataset.screen === "ended";
  let recordings: Recording[];
  try {
    ({ recordings } = await client!.listRecordings(callId));
  } catch {
    return;
  }
  if (!stillHere()) return;
  recordingList.show(recordings);
  if (recordings.some((r) => ["starting", "recording", "ending"].includes(r.status))) {
    recordingPoll = setTimeout(() => stillHere() && void listRecordings(callId), 3000);
  }
}

/** Fetched with the token (the file is no public link), then saved from an object URL. */
async function download(recording: Recording) {
  recordingList.say("Downloading…");
  try {
    const blob = await client!.downloadRecording(recording.id);
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `recording-${recording.id}.${recording.fileType === "mp4" ? "mp4" : "ogg"}`;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    recordingList.say("Downloaded.");
  } catch (err) {
    recordingList.say(`Could not download it: ${explain(err)}`);
  }
}

async function deleteRecording(recording: Recording) {
  try {
    await client!.deleteRecording(recording.id);
    recordingList.say("The recording was deleted.");
    await listRecordings(recording.callId);
  } catch (err) {
    recordingList.say(`Could not delete it: ${explain(err)}`);
  }
  $("recordings-title").focus();
}

// -------------------------------------------------------------- quality

/** What the page receives, from the peer connections' own statistics. */
async function receiving() {
  const totals = { audioPackets: 0, videoFrames: 0, jitterMs: 0, lost: 0, rttMs: 0 };
  const room = current?.room;
  if (!room) return totals;
  for (const p of room.remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) {
      const receiver = (pub.track as RemoteTrack | undefined)?.receiver;
      if (!receiver) continue;
      (await receiver.getStats()).forEach((s: any) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") {
          totals.audioPackets += s.packetsReceived ?? 0;
          totals.jitterMs = Math.max(totals.jitterMs, (s.jitter ?? 0) * 1000);
          totals.lost += s.packetsLost ?? 0;
        }
        if (s.type === "inbound-rtp" && s.kind === "video") totals.videoFrames += s.framesDecoded ?? 0;
        if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime) totals.rttMs = s.currentRoundTripTime * 1000;
      });
    }
  }
  return totals;
}

async function sampleQuality() {
  if (!current?.connected) return;
  // The call may end while its statistics are read: its id is taken first.
  const callId = current.call.id;
  const r = await receiving();
  const total = r.audioPackets + r.lost;
  const packetLossPct = total > 0 ? Math.min(100, (100 * r.lost) / total) : 0;
  await client!
    .recordQualitySample(callId, { jitterMs: Math.min(10000, r.jitterMs), packetLossPct, rttMs: Math.min(10000, r.rttMs) })
    .catch(() => undefined);
}

// -------------------------------------------------------------- history

async function showHistory() {
  show("history");
  const { calls } = await client!.callHistory({ limit: 50 });
  const body = $("history").querySelector("tbody")!;
  body.replaceChildren(
    ...calls.map((call) => {
      const row = document.createElement("tr");
      const cells = [
        new Date(call.createdAt).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }),
        others(call).map((p) => p.name ?? p.userId).join(", "),
        call.type,
        call.outcome ?? call.state,
        call.durationSeconds != null ? duration(call.durationSeconds) : "—",
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        row.appendChild(td);
      }
      row.dataset.callId = call.id;
      return row;
    }),
  );
  $("history-empty").hidden = calls.length > 0;
}

// -------------------------------------------------------- notifications

/** Offered on the home page, asked only when the person presses the button. */
function offerNotifications() {
  const permission = CallNotice.permission();
  $("notify-offer").hidden = permission !== "default";
  const state = $("notify-state");
  state.hidden = permission === "default" || permission === "unsupported";
  state.textContent =
    permission === "granted"
      ? "Call notifications are on: while this tab is in the background, a call shows a notification."
      : "Notifications are blocked for this page in the browser’s settings; calls still ring while it is open.";
}

async function turnOnNotifications() {
  await CallNotice.ask().catch(() => undefined);
  offerNotifications();
  // The button is gone: the answer takes its focus.
  $("notify-state").focus();
}

// -------------------------------------------------------------- wiring

function onSubmit(id: string, handler: (form: HTMLFormElement) => unknown) {
  $<HTMLFormElement>(id).addEventListener("submit", (e) => {
    e.preventDefault();
    void handler(e.currentTarget as HTMLFormElement);
  });
}

function onClick(id: string, handler: () => unknown) {
  $(id).addEventListener("click", () => void handler());
}

onSubmit("signin-form", signIn);
onSubmit("call-form", placeCall);
onSubmit("rating-form", rate);
onSubmit("report-form", report);
onClick("answer", answer);
onClick("decline", decline);
onClick("hang-up", hangUp);
onClick("mute", toggleMute);
onClick("camera", toggleCamera);
onClick("screen", toggleScreen);
onClick("ask-video", askForVideo);
onClick("video-off", revoke);
onClick("record", askToRecord);
onClick("rec-stop", stopRecording);
onClick("skip-rating", () => show("home"));
onClick("nav-home", () => show(current ? "call" : "home"));
onClick("nav-history", showHistory);
onClick("sign-out", signOut);
onClick("notify-on", turnOnNotifications);
document.addEventListener("visibilitychange", () => document.visibilityState === "hidden" && noticeIfHidden());
ringtone.unlockOn(document);

// For the end-to-end tests and for curious developers (this app exists only in development).
Object.assign(window, {
  callgateApp: {
    receiving,
    ringtone: () => ringtone.state(),
    notification: () => notice.current(),
    room: () => current?.room,
    call: () => current?.call,
    events: () => [...lastEvents],
    client: () => client,
    Room,
    RoomEvent,
    Track,
    ConnectionState,
    Participant,
  },
});

session = JSON.parse(sessionStorage.getItem("callgate.session") ?? "null") ?? undefined;
start();
