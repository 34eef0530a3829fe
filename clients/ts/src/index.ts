// callgate's TypeScript client: one function per operation of the OpenAPI
// document (types generated into ./schema.ts), problem+json errors as
// `CallgateError`, and the event stream with ticket auth, reconnects and
// de-duplication.
import type { components } from "./schema.js";

export type Schemas = components["schemas"];
export type Call = Schemas["CallView"];
export type CallWithJoin = Schemas["CallWithJoin"];
export type CallType = Schemas["CallType"];
export type CallList = Schemas["CallList"];
export type VideoView = Schemas["VideoView"];
export type VideoRequest = Schemas["RequestView"];
export type QualitySample = Schemas["SampleBody"];
export type Rating = Schemas["RatingBody"];
export type Ticket = Schemas["TicketView"];
export type MediaChange = Schemas["MediaChange"];
export type ErrorCode = Schemas["ErrorCode"];
export type Problem = Schemas["Problem"];
export type Appointment = Schemas["AppointmentView"];
export type JoinedAppointment = Schemas["JoinedAppointment"];
export type Report = Schemas["ReportView"];
export type ReportReason = Schemas["ReportReason"];
export type Suspension = Schemas["SuspensionView"];
export type RecordingConsent = Schemas["RecordingConsentView"];
export type Recording = Schemas["RecordingView"];
export type RecordingLink = Schemas["RecordingLink"];
/** A recording's `status` (the document says only `string`). */
export type RecordingStatus = "starting" | "recording" | "ending" | "ready" | "failed" | "deleted";

/** An answer of the API that was not a success, with its stable `code`. */
export class CallgateError extends Error {
  readonly status: number;
  readonly code: ErrorCode | "unexpected_response";
  readonly field?: string | null;
  constructor(status: number, problem: Partial<Problem>) {
    super(problem.detail ?? `HTTP ${status}`);
    this.name = "CallgateError";
    this.status = status;
    this.code = problem.code ?? "unexpected_response";
    this.field = problem.field;
  }
}

export interface ClientOptions {
  /** Where callgate answers, e.g. `https://calls.example.com` (no `/api/v1`). */
  baseUrl: string;
  /** The host application's user token; a function is asked before every request. */
  token: string | (() => string | Promise<string>);
  fetch?: typeof fetch;
}

export class CallgateClient {
  readonly baseUrl: string;
  private readonly token: ClientOptions["token"];
  private readonly fetchFn: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Sends a request with the bearer token; a failure answer becomes a `CallgateError`. */
  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await this.fetchFn(`${this.baseUrl}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      const text = await response.text();
      throw new CallgateError(response.status, ((text ? safeJson(text) : undefined) as Partial<Problem>) ?? {});
    }
    return response;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body);
    const text = await response.text();
    return (text ? safeJson(text) : undefined) as T;
  }

  // Calls
  /**
   * Rings `participantIds`. Its `iceServers` are STUN alone while the call rings (no relay for a
   * call nobody answers): join the room once it is answered (`call.accepted`) with
   * {@link CallgateClient.callToken}, whose `iceServers` then carry TURN.
   */
  startCall(participantIds: string[], type: CallType, extra: Omit<Schemas["StartBody"], "participantIds" | "type"> = {}) {
    return this.request<CallWithJoin>("POST", "/calls", { participantIds, type, ...extra });
  }
  /**
   * `video` answers the caller's video request; `recording: true` consents to a recording that
   * is running or requested (without it, answering a call being recorded stops the recording).
   */
  acceptCall(callId: string, body: Schemas["AcceptBody"] = {}) {
    return this.request<CallWithJoin>("POST", `/calls/${enc(callId)}/accept`, body);
  }
  /** Joins a live call one declined or missed the ring of (a group invitee); the body as `acceptCall`'s. */
  joinCall(callId: string, body: Schemas["AcceptBody"] = {}) {
    return this.request<CallWithJoin>("POST", `/calls/${enc(callId)}/join`, body);
  }
  declineCall(callId: string) {
    return this.request<Schemas["CallOnly"]>("POST", `/calls/${enc(callId)}/decline`);
  }
  endCall(callId: string) {
    return this.request<Schemas["CallOnly"]>("POST", `/calls/${enc(callId)}/end`);
  }
  leaveCall(callId: string) {
    return this.request<Schemas["CallOnly"]>("POST", `/calls/${enc(callId)}/leave`);
  }
  /** A fresh join token, and the ICE servers: TURN once someone has answered the call, STUN alone while it rings. */
  callToken(callId: string) {
    return this.request<Schemas["JoinOnly"]>("POST", `/calls/${enc(callId)}/token`);
  }
  getCall(callId: string) {
    return this.request<Call>("GET", `/calls/${enc(callId)}`);
  }
  activeCalls() {
    return this.request<CallList>("GET", "/calls/active");
  }
  callHistory(query: { cursor?: string; limit?: number; conversationId?: string; with?: string } = {}) {
    const params = new URLSearchParams();
    if (query.cursor) params.set("cursor", query.cursor);
    if (query.conversationId) params.set("conversationId", query.conversationId);
    if (query.with) params.set("with", query.with);
    if (query.limit !== undefined) params.set("limit", String(query.limit));
    const qs = params.toString();
    return this.request<CallList>("GET", `/calls/history${qs ? `?${qs}` : ""}`);
  }
  callTimeline(callId: string) {
    return this.request<Schemas["Timeline"]>("GET", `/calls/${enc(callId)}/events`);
  }
  updateMyMedia(callId: string, change: MediaChange) {
    return this.request<Schemas["MediaView"]>("PATCH", `/calls/${enc(callId)}/participants/me`, change);
  }

  // Appointments
  /** Books one (the host application's backend, or a role of SCHEDULER_ROLES). */
  bookAppointment(booking: Schemas["BookBody"]) {
    return this.request<Appointment>("POST", "/appointments", booking);
  }
  getAppointment(appointmentId: string) {
    return this.request<Appointment>("GET", `/appointments/${enc(appointmentId)}`);
  }
  appointmentByRef(externalRef: string) {
    return this.request<Appointment>("GET", `/appointments/by-ref/${enc(externalRef)}`);
  }
  appointments(query: { from?: string; to?: string; cursor?: string; limit?: number } = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const qs = params.toString();
    return this.request<Schemas["AppointmentList"]>("GET", `/appointments${qs ? `?${qs}` : ""}`);
  }
  rescheduleAppointment(appointmentId: string, window: Schemas["RescheduleBody"]) {
    return this.request<Appointment>("PATCH", `/appointments/${enc(appointmentId)}`, window);
  }
  /** In its window: `{appointment, call, join, iceServers, waiting}` (a guest waits for a host to admit them). */
  joinAppointment(appointmentId: string) {
    return this.request<JoinedAppointment>("POST", `/appointments/${enc(appointmentId)}/join`);
  }
  admitToAppointment(appointmentId: string, userId: string) {
    return this.request<Schemas["Admitted"]>("POST", `/appointments/${enc(appointmentId)}/admit`, { userId });
  }
  /** A host: ends it for everyone; a guest: leaves it. */
  endAppointment(appointmentId: string) {
    return this.request<Appointment>("POST", `/appointments/${enc(appointmentId)}/end`);
  }
  cancelAppointment(appointmentId: string) {
    return this.request<Appointment>("POST", `/appointments/${enc(appointmentId)}/cancel`);
  }

  // Video consent
  videoState(callId: string) {
    return this.request<VideoView>("GET", `/calls/${enc(callId)}/video`);
  }
  requestVideo(callId: string) {
    return this.request<Schemas["RequestCreated"]>("POST", `/calls/${enc(callId)}/video/requests`);
  }
  acceptVideoRequest(callId: string, requestId: string) {
    return this.request<VideoView>("POST", `/calls/${enc(callId)}/video/requests/${enc(requestId)}/accept`);
  }
  rejectVideoRequest(callId: string, requestId: string) {
    return this.request<VideoView>("POST", `/calls/${enc(callId)}/video/requests/${enc(requestId)}/reject`);
  }
  revokeVideo(callId: string) {
    return this.request<VideoView>("POST", `/calls/${enc(callId)}/video/revoke`);
  }
  consentLedger(callId: string) {
    return this.request<Schemas["Ledger"]>("GET", `/calls/${enc(callId)}/consent`);
  }

  // Recording (everyone present consents; anyone stops it)
  recordingState(callId: string) {
    return this.request<RecordingConsent>("GET", `/calls/${enc(callId)}/recording`);
  }
  /** Asks everyone present (asking is consenting); 429 `recording_request_cooldown` after a decline. */
  requestRecording(callId: string) {
    return this.request<Schemas["RecordingRequestCreated"]>("POST", `/calls/${enc(callId)}/recording/requests`);
  }
  acceptRecordingRequest(callId: string, requestId: string) {
    return this.request<RecordingConsent>("POST", `/calls/${enc(callId)}/recording/requests/${enc(requestId)}/accept`);
  }
  rejectRecordingRequest(callId: string, requestId: string) {
    return this.request<RecordingConsent>("POST", `/calls/${enc(callId)}/recording/requests/${enc(requestId)}/reject`);
  }
  /** Stops the recording (anyone present); while it is only requested, says no or withdraws. */
  stopRecording(callId: string) {
    return this.request<RecordingConsent>("POST", `/calls/${enc(callId)}/recording/stop`);
  }
  /** The call's recordings, oldest first (404 for anyone who was not in it). */
  listRecordings(callId: string) {
    return this.request<Schemas["Recordings"]>("GET", `/calls/${enc(callId)}/recordings`);
  }
  /**
   * A ready recording's file (`audio/ogg` or `video/mp4`), fetched with the token. With S3-compatible
   * storage the answer is a redirect to the bucket, which `fetch` follows without the token (a browser
   * reads it only if the bucket's CORS rules allow the app's origin; else use `recordingLink`).
   */
  async downloadRecording(recordingId: string): Promise<Blob> {
    return (await this.send("GET", `/recordings/${enc(recordingId)}/file`)).blob();
  }
  /**
   * A short-lived link to a ready recording's file and when it stops working: a presigned URL to the
   * bucket (for a plain link, a player), or with local storage the API path of `downloadRecording`.
   */
  recordingLink(recordingId: string) {
    return this.request<RecordingLink>("GET", `/recordings/${enc(recordingId)}/link`);
  }
  /** Deletes the file; the recording stays listed, `deleted`, until its retention is over. */
  deleteRecording(recordingId: string) {
    return this.request<Recording>("DELETE", `/recordings/${enc(recordingId)}/file`);
  }

  // Quality and rating
  recordQualitySample(callId: string, sample: QualitySample) {
    return this.request<Schemas["SampleView"]>("POST", `/calls/${enc(callId)}/quality`, sample);
  }
  qualitySummary(callId: string) {
    return this.request<Schemas["QualityView"]>("GET", `/calls/${enc(callId)}/quality`);
  }
  rateCall(callId: string, rating: Rating) {
    return this.request<Schemas["Rated"]>("PUT", `/calls/${enc(callId)}/rating`, rating);
  }

  // Blocks (never revealed to the blocked user)
  blockUser(userId: string) {
    return this.request<void>("PUT", `/blocks/${enc(userId)}`);
  }
  unblockUser(userId: string) {
    return this.request<void>("DELETE", `/blocks/${enc(userId)}`);
  }
  listBlocks() {
    return this.request<Schemas["Blocks"]>("GET", "/blocks");
  }

  // Trust and safety
  /**
   * Reports another participant of a call one took part in (during it or for `REPORT_WINDOW` after):
   * sent to the host application, never shown to them. Filing it again answers the first report.
   */
  reportParticipant(callId: string, userId: string, reason: ReportReason, text?: string) {
    const body: Schemas["ReportBody"] = text ? { userId, reason, text } : { userId, reason };
    return this.request<Report>("POST", `/calls/${enc(callId)}/reports`, body);
  }
  /** The reports one filed in the call (`admin`: all of them). */
  callReports(callId: string) {
    return this.request<Schemas["CallReports"]>("GET", `/calls/${enc(callId)}/reports`);
  }

  // Moderation (`admin` only; each action is audited with its reason)
  moderatorEndCall(callId: string, reason: string) {
    return this.request<Schemas["CallOnly"]>("POST", `/admin/calls/${enc(callId)}/end`, { reason });
  }
  moderatorRemoveParticipant(callId: string, userId: string, reason: string) {
    return this.request<Schemas["CallOnly"]>("POST", `/admin/calls/${enc(callId)}/remove`, { userId, reason });
  }
  /** For `durationSeconds` (60 s to ten years), or until lifted when it is left out. */
  suspendUser(userId: string, reason: string, durationSeconds?: number) {
    const body: Schemas["SuspendBody"] = durationSeconds === undefined ? { reason } : { reason, durationSeconds };
    return this.request<Suspension>("PUT", `/admin/suspensions/${enc(userId)}`, body);
  }
  liftSuspension(userId: string, reason: string) {
    return this.request<Schemas["SuspensionLifted"]>("POST", `/admin/suspensions/${enc(userId)}/lift`, { reason });
  }
  /** The suspension in force (a 404 `CallgateError` when there is none). */
  suspension(userId: string) {
    return this.request<Suspension>("GET", `/admin/suspensions/${enc(userId)}`);
  }
  auditLog(query: { callId?: string; userId?: string; before?: string; limit?: number } = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const qs = params.toString();
    return this.request<Schemas["AuditLog"]>("GET", `/admin/audit${qs ? `?${qs}` : ""}`);
  }

  // Network
  /** STUN and TURN for someone in a call someone has answered (409 `not_answered` while it rings). */
  iceServers() {
    return this.request<Schemas["IceServers"]>("GET", "/ice-servers");
  }
  turnCredentials() {
    return this.request<Schemas["TurnCredentials"]>("GET", "/turn/credentials");
  }

  // Event stream
  eventTicket() {
    return this.request<Ticket>("POST", "/events/ticket");
  }
  /** The event stream, opened with a ticket; see {@link EventStream}. */
  events(options: Omit<EventStreamOptions, "client"> = {}) {
    return new EventStream({ ...options, client: this });
  }
}

function enc(s: string) {
  return encodeURIComponent(s);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export { EventStream, backoffDelay } from "./events.js";
export { isEvent, isRecordingEvent } from "./events.js";
export type {
  CallgateEvent,
  EventData,
  EventStreamOptions,
  EventType,
  RecordingEvent,
  RecordingEventType,
  StreamStatus,
  TypedEvent,
} from "./events.js";
import { EventStream, type EventStreamOptions } from "./events.js";
export {
  CLOSED,
  allowedSubscribers,
  kindOfMime,
  mayPlay,
  mayReceive,
  parseRoomState,
  realKind,
} from "./media.js";
export type { MediaKind, Publication, RoomState, VideoState } from "./media.js";
