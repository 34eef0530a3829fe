// The event stream: a WebSocket opened with a single-use ticket (user tokens
// never go in URLs), reopened with exponential backoff, events delivered at
// most once each (the server delivers at least once), and `catchUp()` after
// every (re)connect because events raised while closed are not replayed.
import type { CallgateClient, CallList, Schemas } from "./index.js";

/** The recording events a participant's devices are told. */
export type RecordingEventType =
  | "recording.requested"
  | "recording.on"
  | "recording.off"
  | "recording.declined"
  | "recording.expired"
  | "recording.ready"
  | "recording.failed";

/** What a user's devices are told on the event stream (`ClientEvent` in src/domain/mod.rs). */
export type EventType =
  | "call.incoming"
  | "call.accepted"
  | "call.declined"
  | "call.cancelled"
  | "call.missed"
  | "call.ended"
  | "call.ring_stopped"
  | "participant.joined"
  | "participant.reconnecting"
  | "participant.invited"
  | "participant.left"
  | "media.updated"
  | "video.requested"
  | "video.on"
  | "video.off"
  | "video.declined"
  | "video.expired"
  | RecordingEventType
  | "appointment.opened"
  | "appointment.waiting"
  | "appointment.admitted"
  | "appointment.turned_away"
  | "appointment.started"
  | "appointment.ended"
  | "appointment.cancelled"
  | "appointment.no_show";

/** The `data` of the consent events (video's and recording's). */
export interface EventData {
  "video.requested": { request: Schemas["RequestView"] };
  "video.on": { video: "on" };
  "video.off": { video: "off" };
  "video.declined": { requestId: string };
  "video.expired": { requestId: string };
  /** To everyone present but the requester, who answer it. */
  "recording.requested": { request: Schemas["RequestView"] };
  "recording.on": { recording: "on" };
  "recording.off": { recording: "off" };
  /** To the requester only, never saying who said no. */
  "recording.declined": { requestId: string };
  "recording.expired": { requestId: string };
  /** To everyone who was in the call: the file can be fetched. */
  "recording.ready": { recordingId: string; durationMs: number; sizeBytes: number };
  "recording.failed": { recordingId: string };
}

export interface CallgateEvent {
  id: string;
  /** One of {@link EventType}; a newer server may send others. */
  type: EventType | (string & {});
  callId?: string | null;
  at: string;
  data: Record<string, unknown>;
}

/** An event whose `data` is known by its type. */
export type TypedEvent<T extends keyof EventData> = Omit<CallgateEvent, "type" | "data"> & { type: T; data: EventData[T] };

/** The recording events, as a union discriminated by `type`. */
export type RecordingEvent = { [T in RecordingEventType]: TypedEvent<T> }[RecordingEventType];

const RECORDING_EVENTS: readonly string[] = [
  "recording.requested",
  "recording.on",
  "recording.off",
  "recording.declined",
  "recording.expired",
  "recording.ready",
  "recording.failed",
] satisfies RecordingEventType[];

/** Whether an event is one of recording's; a `switch` on its `type` then types its `data`. */
export function isRecordingEvent(event: CallgateEvent): event is CallgateEvent & RecordingEvent {
  return RECORDING_EVENTS.includes(event.type);
}

/** Narrows an event to its type, with its `data` typed (`if (isEvent(e, "recording.ready")) e.data.recordingId`). */
export function isEvent<T extends keyof EventData>(event: CallgateEvent, type: T): event is CallgateEvent & TypedEvent<T> {
  return event.type === type;
}

export type StreamStatus = "connecting" | "open" | "closed";

export interface EventStreamOptions {
  client: CallgateClient;
  /** Called with the calls still live after each (re)connect. */
  onCatchUp?: (active: CallList) => void;
  onEvent?: (event: CallgateEvent) => void;
  onStatus?: (status: StreamStatus) => void;
  /** The WebSocket constructor (browsers and Node 22 have one). */
  WebSocket?: typeof WebSocket;
  /** First reconnect delay and its cap, in ms. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** How many event ids are remembered for de-duplication. */
  remember?: number;
}

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, with jitter in [50%, 100%]. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const full = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(full * (0.5 + random() / 2));
}

export class EventStream {
  private readonly options: Required<Omit<EventStreamOptions, "onCatchUp" | "onEvent" | "onStatus">> &
    EventStreamOptions;
  private socket?: WebSocket;
  private attempt = 0;
  private stopped = false;
  private timer?: ReturnType<typeof setTimeout>;
  private readonly seen = new Set<string>();

  constructor(options: EventStreamOptions) {
    this.options = {
      WebSocket: globalThis.WebSocket,
      minDelayMs: 500,
      maxDelayMs: 30_000,
      remember: 1000,
      ...options,
    };
  }

  /** Opens the stream; it reopens by itself until `close()`. */
  start(): this {
    this.stopped = false;
    void this.connect();
    return this;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.status("closed");
  }

  /** Hands an event on unless its id was seen; true if it was handed on. */
  deliver(event: CallgateEvent): boolean {
    if (this.seen.has(event.id)) return false;
    this.seen.add(event.id);
    if (this.seen.size > this.options.remember) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.options.onEvent?.(event);
    return true;
  }

  /** Reads the calls still live; run after every (re)connect. */
  async catchUp(): Promise<CallList> {
    const active = await this.options.client.activeCalls();
    this.options.onCatchUp?.(active);
    return active;
  }

  private status(s: StreamStatus) {
    this.options.onStatus?.(s);
  }

  private async connect() {
    if (this.stopped) return;
    this.status("connecting");
    let url: string;
    try {
      const { ticket } = await this.options.client.eventTicket();
      url = `${this.options.client.baseUrl.replace(/^http/, "ws")}/api/v1/events?ticket=${encodeURIComponent(ticket)}`;
    } catch {
      this.retry();
      return;
    }
    if (this.stopped) return;
    const socket = new this.options.WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.status("open");
      void this.catchUp().catch(() => undefined);
    };
    socket.onmessage = (message) => {
      const event = parseEvent(message.data);
      if (event) this.deliver(event);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.retry();
    };
  }

  private retry() {
    if (this.stopped) return;
    this.status("closed");
    const delay = backoffDelay(this.attempt++, this.options.minDelayMs, this.options.maxDelayMs);
    this.timer = setTimeout(() => void this.connect(), delay);
  }
}

function parseEvent(data: unknown): CallgateEvent | undefined {
  if (typeof data !== "string") return undefined;
  try {
    const event = JSON.parse(data);
    // Heartbeats carry no id; they only keep the connection alive.
    if (typeof event?.id !== "string" || typeof event?.type !== "string") return undefined;
    return event as CallgateEvent;
  } catch {
    return undefined;
  }
}
