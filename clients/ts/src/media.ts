// What an honest client plays and lets others receive, decided from the
// room's metadata: only callgate can write it (no participant holds
// `roomAdmin`), while data messages, track names, participant metadata and
// the kinds and sources a publisher declares are whatever a modified client
// says. A token LiveKit refreshed for someone is valid for ten minutes and
// cannot be revoked, so a connection made with an old one may be in the
// room until callgate notices it (a fraction of a second): these rules are
// what makes sure nothing of it plays on an honest client's screen or
// speaker, and that it receives nothing from an honest client.
//
// Pure functions, no LiveKit import: the web app (and any client using
// livekit-client or another SDK) feeds them the publication's facts.

export type VideoState = "off" | "requested" | "on";

/** The call as the room's metadata says it is. */
export interface RoomState {
  /** Whether video is on; only callgate can say it. */
  video: VideoState;
  /** User ids of those live in the call (present and admitted). */
  live: string[];
  /**
   * Whether the call is being recorded (everyone present consented): the
   * indicator to show. Only callgate can say it; it says nothing of who
   * answered what.
   */
  recording: boolean;
}

/** Nothing on and nobody live: what a room without callgate's metadata is. */
export const CLOSED: RoomState = { video: "off", live: [], recording: false };

/**
 * Reads the room's metadata. Anything unreadable is the closed state:
 * nobody live, video off, not recording. It never turns anything on by
 * guessing (`recording` is true only when the metadata says `true`).
 */
export function parseRoomState(metadata: string | undefined | null): RoomState {
  let value: unknown;
  try {
    value = JSON.parse(metadata || "null");
  } catch {
    return CLOSED;
  }
  if (!value || typeof value !== "object") return CLOSED;
  const meta = value as { video?: unknown; live?: unknown; recording?: unknown };
  const video: VideoState = meta.video === "on" ? "on" : meta.video === "requested" ? "requested" : "off";
  const live = Array.isArray(meta.live) ? meta.live.filter((x): x is string => typeof x === "string") : [];
  return { video, live, recording: meta.recording === true };
}

export type MediaKind = "audio" | "video" | "other";

/** The kind of a codec's mime type (`video/VP8` is video); undefined when there is none. */
export function kindOfMime(mime: string | undefined | null): MediaKind | undefined {
  const top = (mime ?? "").split("/")[0].trim().toLowerCase();
  if (!top) return undefined;
  return top === "video" ? "video" : top === "audio" ? "audio" : "other";
}

/** A remote publication as the SDK reports it. */
export interface Publication {
  /** The publisher's identity (callgate's user id). */
  publisher: string;
  /** The kind its publisher declared. */
  kind: string;
  /** The codec LiveKit receives (`TrackInfo.mime_type`), when known. */
  mimeType?: string;
  /** The source its publisher declared: camera, microphone, screen_share, screen_share_audio, unknown. */
  source: string;
}

/**
 * What the track really is: video if its media or its declaration says so;
 * `undefined` when they disagree (a lie: never played).
 */
export function realKind(pub: Publication): MediaKind | undefined {
  const declared: MediaKind = pub.kind === "video" ? "video" : pub.kind === "audio" ? "audio" : "other";
  const media = kindOfMime(pub.mimeType);
  if (media !== undefined && media !== declared) return undefined;
  return declared;
}

/**
 * Whether to subscribe to (and play) a publication now: its publisher is
 * live in the call, its declared kind is its media's, its source is one its
 * kind may have (audio as microphone or screen-share audio, video as camera
 * or screen share), and video or screen-share audio only while video is on.
 */
export function mayReceive(state: RoomState, pub: Publication): boolean {
  if (!state.live.includes(pub.publisher)) return false;
  switch (realKind(pub)) {
    case "audio":
      return pub.source === "microphone" || (pub.source === "screen_share_audio" && state.video === "on");
    case "video":
      return (pub.source === "camera" || pub.source === "screen_share") && state.video === "on";
    default:
      return false;
  }
}

/**
 * Whether a received media track may be played: its real kind (the
 * browser's `MediaStreamTrack.kind`) must be the one the publication
 * declared, which `mayReceive` already checked against the codec.
 */
export function mayPlay(state: RoomState, pub: Publication, trackKind: string): boolean {
  return mayReceive(state, pub) && trackKind === realKind(pub);
}

/**
 * Who may subscribe to this client's own tracks (LiveKit enforces it:
 * `setTrackSubscriptionPermissions(false, …)`): those live in the call,
 * but oneself. A connection made with someone's old token after they left
 * or were removed gets nothing.
 */
export function allowedSubscribers(state: RoomState, me: string): string[] {
  return state.live.filter((id) => id !== me);
}
