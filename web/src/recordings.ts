// What the page shows of recording: in the call, the indicator everyone
// sees while it records, the prompt of someone asking, and notes; after the
// call, its recordings with a download and a delete. Only a view: app.ts
// asks callgate, and callgate's answers and events decide what shows here.

import type { Recording, RecordingStatus } from "../../clients/ts/src/index";
import { duration } from "./timer";

const $ = (id: string) => document.getElementById(id) as HTMLElement;

function button(text: string, onClick: () => void, className?: string) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

/** In the call: "● Recording" and its stop button, someone's request, and what happened. */
export class RecordingBar {
  private readonly indicator = $("rec-indicator");
  private readonly stop = $("rec-stop") as HTMLButtonElement;
  private readonly box = $("rec-box");
  private readonly record = $("record") as HTMLButtonElement;
  // What the box shows, so that reading the state again neither repeats it
  // to a screen reader nor takes anyone's focus.
  private shown = "";

  /**
   * Whether it records: a red dot and the word (not colour alone) for
   * everyone, in a status region so a screen reader says it, and the stop
   * button; the Record button only while nothing is asked or recorded.
   */
  state(state: "off" | "requested" | "on") {
    const on = state === "on";
    if (on !== this.indicator.classList.contains("on")) {
      this.indicator.classList.toggle("on", on);
      if (on) {
        const dot = document.createElement("span");
        dot.className = "rec-dot";
        dot.setAttribute("aria-hidden", "true");
        this.indicator.replaceChildren(dot, "Recording");
      } else {
        this.indicator.replaceChildren();
      }
    }
    this.stop.hidden = !on;
    this.record.hidden = state !== "off";
  }

  /** A line of what happened (empty: nothing). `action`: a button beside it. */
  note(text: string, action?: { label: string; onClick: () => void }) {
    const key = `note:${text}:${action?.label ?? ""}`;
    if (key === this.shown) return;
    this.shown = key;
    this.box.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.className = "note";
    p.tabIndex = -1;
    p.textContent = text;
    if (action) p.append(" ", button(action.label, action.onClick, "inline"));
    this.box.appendChild(p);
  }

  /** "Bob would like to record this call": Allow, Don't allow. The Allow button takes the focus. */
  prompt(requestId: string, who: string, answer: (allow: boolean) => void) {
    const key = `prompt:${requestId}`;
    if (key === this.shown) return;
    this.shown = key;
    const prompt = document.createElement("div");
    prompt.className = "prompt";
    const text = document.createElement("span");
    text.textContent = `${who} would like to record this call`;
    const allow = button("Allow", () => answer(true), "primary");
    prompt.append(text, allow, button("Don't allow", () => answer(false)));
    this.box.replaceChildren(prompt);
    allow.focus();
  }

  /** Keeps the keyboard where the person was once what they pressed is gone. */
  focus() {
    const target = [this.stop, this.record, this.box.querySelector("button"), this.box.querySelector<HTMLElement>(".note")].find(
      (el) => el && !el.hidden,
    );
    target?.focus();
  }

  clear() {
    this.state("off");
    this.note("");
  }
}

const STATUS: Record<RecordingStatus, string> = {
  starting: "Starting…",
  recording: "Still recording",
  ending: "Being finished…",
  ready: "Ready",
  failed: "Failed",
  deleted: "Deleted",
};

function size(bytes: number) {
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export interface RecordingActions {
  download: (recording: Recording) => Promise<void>;
  delete: (recording: Recording) => Promise<void>;
}

/** After the call: its recordings, each with what can be done with it. */
export class RecordingList {
  private readonly section = $("recordings");
  private readonly list = $("recordings-list");
  private readonly status = $("recordings-status");

  constructor(private readonly actions: RecordingActions) {}

  show(recordings: Recording[]) {
    this.section.hidden = recordings.length === 0;
    // Re-rendering would take the focus from a button being used: only what changed is redrawn.
    const wanted = new Set(recordings.map((r) => r.id));
    for (const li of [...this.list.children] as HTMLElement[]) if (!wanted.has(li.dataset.id!)) li.remove();
    recordings.forEach((recording, n) => {
      const key = `${recording.status}/${recording.sizeBytes ?? ""}`;
      let li = this.list.querySelector<HTMLElement>(`li[data-id="${recording.id}"]`);
      if (li?.dataset.key === key) return;
      const fresh = this.item(recording, n + 1);
      const focused = li?.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.action : undefined;
      if (li) li.replaceWith(fresh);
      else this.list.appendChild(fresh);
      li = fresh;
      if (focused) (li.querySelector<HTMLElement>(`[data-action="${focused}"]`) ?? li.querySelector<HTMLElement>("button"))?.focus();
    });
  }

  hide() {
    this.section.hidden = true;
    this.list.replaceChildren();
    this.status.textContent = "";
  }

  say(text: string) {
    this.status.textContent = text;
  }

  private item(recording: Recording, n: number) {
    const li = document.createElement("li");
    li.dataset.id = recording.id;
    li.dataset.key = `${recording.status}/${recording.sizeBytes ?? ""}`;
    li.dataset.status = recording.status;
    const what = document.createElement("span");
    what.className = "what";
    const kind = recording.fileType === "mp4" ? "Video" : "Audio";
    const facts = [`${kind} recording ${n}`];
    if (recording.durationMs != null) facts.push(duration(recording.durationMs / 1000));
    if (recording.sizeBytes != null && recording.status === "ready") facts.push(size(recording.sizeBytes));
    what.textContent = facts.join(" · ");
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = STATUS[recording.status as RecordingStatus] ?? recording.status;
    li.append(what, state);
    if (recording.status === "ready") {
      const label = `${kind} recording ${n}`;
      const get = button("Download", () => void this.actions.download(recording));
      get.dataset.action = "download";
      get.setAttribute("aria-label", `Download ${label.toLowerCase()}`);
      const del = button("Delete", () => this.confirmDelete(li, recording, label.toLowerCase()));
      del.dataset.action = "delete";
      del.setAttribute("aria-label", `Delete ${label.toLowerCase()}`);
      const actions = document.createElement("div");
      actions.className = "actions";
      actions.append(get, del);
      li.append(actions);
    }
    return li;
  }

  /** The file goes for everyone who was in the call: asked once more, in place. */
  private confirmDelete(li: HTMLElement, recording: Recording, label: string) {
    const ask = document.createElement("span");
    ask.className = "confirm";
    const text = document.createElement("span");
    text.textContent = "Delete it for everyone in the call?";
    const actions = li.querySelector<HTMLElement>(".actions")!;
    const yes = button("Delete", () => void this.actions.delete(recording), "danger");
    yes.dataset.action = "delete";
    yes.setAttribute("aria-label", `Yes, delete ${label}`);
    const keep = button("Keep", () => {
      ask.remove();
      buttons.forEach((b) => (b.hidden = false));
      li.querySelector<HTMLElement>('[data-action="delete"]')?.focus();
    });
    const buttons = [...actions.querySelectorAll<HTMLButtonElement>(":scope > button")];
    buttons.forEach((b) => (b.hidden = true));
    ask.append(text, yes, keep);
    actions.append(ask);
    keep.focus();
  }
}
