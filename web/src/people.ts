// The people of a call as this page shows them: a tile each with their
// initials and name, what they are doing (being rung, connecting, speaking,
// muted, gone) and their network, their video when it plays, and oneself in
// a corner. Only a view: what is received and played is decided in app.ts,
// from the room's metadata (clients/ts/src/media.ts); nothing here turns
// anything on.

import type { Call } from "../../clients/ts/src/index";

type Person = Call["participants"][number];

/** LiveKit's words for a connection's quality (`ConnectionQuality`). */
export type Quality = "excellent" | "good" | "poor" | "lost" | "unknown";

const NETWORK: Record<Quality, string> = {
  excellent: "Excellent network",
  good: "Good network",
  poor: "Poor network",
  lost: "Connection lost",
  unknown: "",
};

/** What a participant who is not in the room is doing, as the call says. */
const AWAY: Record<Person["status"], string> = {
  invited: "Ringing…",
  accepted: "Connecting…",
  joined: "Connecting…",
  reconnecting: "Reconnecting…",
  left: "Left",
  declined: "Declined",
  missed: "No answer",
  busy: "Busy",
  removed: "Removed",
};

/** Someone's initials: the first letters of the first two words of their name ("Ada Lovelace": AL, "Bob": B). */
export function initials(name: string): string {
  const words = name.trim().split(/[\s._@-]+/).filter(Boolean);
  const letters = [...(words[0] ?? "?")][0] + (words.length > 1 ? [...words[1]][0] : "");
  return letters.toUpperCase();
}

/** A colour class for someone's avatar, the same on every page. */
export function hue(userId: string): string {
  let h = 0;
  for (const c of userId) h = (h * 31 + c.codePointAt(0)!) >>> 0;
  return `hue-${h % 8}`;
}

/** An avatar: initials on a colour, hidden from screen readers (the name is beside it). */
export function avatar(el: HTMLElement, userId: string, name: string) {
  el.textContent = initials(name);
  el.className = `avatar ${hue(userId)}`;
  el.setAttribute("aria-hidden", "true");
}

interface Tile {
  root: HTMLElement;
  video: HTMLVideoElement;
  name: HTMLElement;
  state: HTMLElement;
  muted: HTMLElement;
  speaking: HTMLElement;
  network: HTMLElement;
}

function part(parent: HTMLElement, tag: string, className: string): HTMLElement {
  const el = document.createElement(tag);
  el.className = className;
  parent.appendChild(el);
  return el;
}

/** The parts of a tile; `root` is an existing element (oneself) or a new list item. */
function build(root: HTMLElement, video?: HTMLVideoElement): Tile {
  root.classList.add("tile");
  const v = video ?? (part(root, "video", "") as HTMLVideoElement);
  v.autoplay = true;
  v.playsInline = true;
  part(root, "div", "avatar");
  const caption = part(root, "div", "caption");
  const name = part(caption, "span", "name");
  const state = part(caption, "span", "state");
  const muted = part(caption, "span", "badge muted-badge");
  muted.textContent = "Muted";
  const speaking = part(caption, "span", "badge speaking-badge");
  speaking.textContent = "Speaking";
  const network = part(caption, "span", "network");
  const bars = part(network, "span", "bars");
  bars.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 3; i++) part(bars, "i", "");
  part(network, "span", "network-text");
  return { root, video: v, name, state, muted, speaking, network };
}

export class People {
  private tiles = new Map<string, Tile>();
  private me = "";
  private readonly self: Tile;

  constructor(
    private readonly list: HTMLElement,
    selfRoot: HTMLElement,
    selfVideo: HTMLVideoElement,
  ) {
    this.self = build(selfRoot, selfVideo);
  }

  /** A new call: a tile for each other participant, and oneself. */
  reset(call: Call, me: string) {
    this.clear();
    this.me = me;
    const mine = call.participants.find((p) => p.userId === me);
    this.fill(this.self, me, "You", mine?.name ?? me);
    this.self.root.dataset.id = me;
    this.tiles.set(me, this.self);
    this.update(call);
  }

  /** The call as callgate last told it: who is in it, being rung, or gone. */
  update(call: Call) {
    for (const p of call.participants) {
      if (p.userId === this.me) continue;
      // Callgate learns an invitee's name when they answer.
      const name = p.name ?? p.userId;
      const tile = this.tiles.get(p.userId) ?? this.add(p.userId, name);
      if (tile.name.textContent !== name) this.fill(tile, p.userId, name, name);
      tile.root.dataset.status = p.status;
      this.describe(tile);
    }
    this.list.dataset.count = String(this.list.children.length);
  }

  /** Whether this person is in the room (LiveKit's view, which is what can be heard). */
  present(userId: string, inRoom: boolean) {
    const tile = this.tiles.get(userId);
    if (!tile) return;
    this.mark(tile, "present", inRoom);
    if (!inRoom) this.mark(tile, "speaking", false);
    this.describe(tile);
  }

  /** LiveKit's active speakers: everyone else is not speaking. */
  speaking(userIds: string[]) {
    for (const [key, tile] of this.tiles) this.mark(tile, "speaking", userIds.includes(key));
  }

  muted(userId: string, muted: boolean) {
    const tile = this.tiles.get(userId);
    if (tile) this.mark(tile, "muted", muted);
  }

  quality(userId: string, quality: Quality) {
    const tile = this.tiles.get(userId);
    if (!tile) return;
    tile.root.dataset.quality = quality;
    tile.network.lastElementChild!.textContent = NETWORK[quality];
  }

  /**
   * The `<video>` a participant's camera plays in (in their tile), or their
   * screen (a tile of its own, made now); oneself's camera for one's own id.
   */
  videoFor(userId: string, source: string): HTMLVideoElement {
    let tile = this.tiles.get(userId);
    if (source === "screen_share") {
      const key = `${userId}#screen`;
      const name = tile?.name.textContent ?? userId;
      tile = this.tiles.get(key) ?? this.add(key, `${name}’s screen`, userId);
      this.mark(tile, "screen", true);
      this.mark(tile, "present", true);
    } else if (!tile) {
      tile = this.add(userId, userId);
    }
    this.mark(tile, "video", true);
    return tile.video;
  }

  /**
   * A track was detached from `el`: if it is a tile's video, the tile shows
   * the initials again (a screen's tile goes); true if it was one.
   */
  release(el: HTMLMediaElement): boolean {
    for (const [key, tile] of this.tiles) {
      if (tile.video !== el) continue;
      const stream = el.srcObject as MediaStream | null;
      if (stream && stream.getVideoTracks().length > 0) return true;
      el.srcObject = null;
      this.mark(tile, "video", false);
      if (tile.root.dataset.screen !== undefined) {
        this.tiles.delete(key);
        tile.root.remove();
      }
      this.list.dataset.count = String(this.list.children.length);
      return true;
    }
    return false;
  }

  /** One's own camera shows in one's corner, or the initials do. */
  selfVideo(on: boolean) {
    this.mark(this.self, "video", on);
    if (!on) this.self.video.srcObject = null;
  }

  /** The call is over: no tiles, no video. */
  clear() {
    for (const tile of this.tiles.values()) tile.video.srcObject = null;
    this.tiles.clear();
    this.list.replaceChildren();
    this.list.dataset.count = "0";
    const root = this.self.root;
    for (const key of ["video", "speaking", "muted", "quality", "present", "status"]) delete root.dataset[key];
    this.self.network.lastElementChild!.textContent = "";
  }

  private add(key: string, name: string, userId = key): Tile {
    const li = document.createElement("li");
    const tile = build(li);
    li.dataset.id = key;
    this.fill(tile, userId, name, name);
    this.tiles.set(key, tile);
    this.list.appendChild(li);
    return tile;
  }

  private fill(tile: Tile, userId: string, label: string, name: string) {
    avatar(tile.root.querySelector<HTMLElement>(".avatar")!, userId, name);
    tile.name.textContent = label;
    if (tile !== this.self) tile.video.setAttribute("aria-label", `${label}’s video`);
  }

  /** The state line: nothing while they are here, else what the call says they are doing. */
  private describe(tile: Tile) {
    const here = tile.root.dataset.present !== undefined;
    const status = tile.root.dataset.status as Person["status"] | undefined;
    tile.state.textContent = here || !status ? "" : AWAY[status];
    tile.root.classList.toggle("gone", !here && ["left", "declined", "missed", "busy", "removed"].includes(status ?? ""));
  }

  /** A flag on a tile (`data-speaking`, …), which the style sheet shows. */
  private mark(tile: Tile, what: "speaking" | "muted" | "present" | "video" | "screen", on: boolean) {
    if (on) tile.root.dataset[what] = "";
    else delete tile.root.dataset[what];
  }
}
