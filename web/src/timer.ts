// How long the call has been going, shown every second.

/** `m:ss`, or `h:mm:ss` from an hour. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const [h, m, r] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

export class CallTimer {
  private since?: number;
  private tick?: ReturnType<typeof setInterval>;

  constructor(private readonly el: HTMLElement) {}

  /**
   * Counts from `since` (ms since the epoch): when callgate says the call
   * became active, or when this page saw the other side connect. A moment
   * in the future (this device's clock is behind) counts from now.
   */
  start(since: number) {
    this.since = Math.min(since, Date.now());
    clearInterval(this.tick);
    this.tick = setInterval(() => this.show(), 1000);
    this.el.hidden = false;
    this.show();
  }

  get running(): boolean {
    return this.since !== undefined;
  }

  /** Stops; how many seconds it counted (0 if it never started). */
  stop(): number {
    clearInterval(this.tick);
    const counted = this.since === undefined ? 0 : (Date.now() - this.since) / 1000;
    this.since = undefined;
    this.el.hidden = true;
    this.el.textContent = "";
    return counted;
  }

  private show() {
    if (this.since !== undefined) this.el.textContent = duration((Date.now() - this.since) / 1000);
  }
}
