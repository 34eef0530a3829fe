// An incoming call gets noticed: a ringtone made with WebAudio (no sound file
// to fetch), and a notification while the tab is in the background, if the
// person turned notifications on (they are asked only when they choose to).

/** A two-note chime every three seconds, until stopped. */
export class Ringtone {
  private ctx?: AudioContext;
  private out?: GainNode;
  private analyser?: AnalyserNode;
  private tick?: ReturnType<typeof setInterval>;

  /**
   * Browsers let a page make sound after someone interacted with it: the
   * audio context is made (or resumed) at the first click or key press.
   */
  unlockOn(target: Document) {
    const unlock = () => void this.context().resume().catch(() => undefined);
    target.addEventListener("pointerdown", unlock, { passive: true });
    target.addEventListener("keydown", unlock, { passive: true });
  }

  start() {
    if (this.tick !== undefined) return;
    const ctx = this.context();
    void ctx.resume().catch(() => undefined);
    this.out!.gain.cancelScheduledValues(ctx.currentTime);
    this.out!.gain.setValueAtTime(1, ctx.currentTime);
    this.chime();
    this.tick = setInterval(() => this.chime(), 3000);
  }

  stop() {
    if (this.tick === undefined) return;
    clearInterval(this.tick);
    this.tick = undefined;
    const ctx = this.ctx!;
    // A short fade, not a click.
    this.out!.gain.setTargetAtTime(0, ctx.currentTime, 0.02);
  }

  /** For the tests: whether it rings, the context's state, and the level coming out (0 to 1). */
  state() {
    let level = 0;
    if (this.analyser) {
      const samples = new Float32Array(this.analyser.fftSize);
      this.analyser.getFloatTimeDomainData(samples);
      level = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
    }
    return { playing: this.tick !== undefined, context: this.ctx?.state ?? "none", level };
  }

  private context(): AudioContext {
    if (!this.ctx) {
      this.ctx = new AudioContext();
      this.out = this.ctx.createGain();
      this.analyser = this.ctx.createAnalyser();
      this.out.connect(this.analyser).connect(this.ctx.destination);
    }
    return this.ctx;
  }

  /** E6 then C6, twice, each note a soft attack and a bell-like decay. */
  private chime() {
    const ctx = this.ctx!;
    const t0 = ctx.currentTime + 0.02;
    const notes: [number, number][] = [[1318.5, 0], [1046.5, 0.22], [1318.5, 0.7], [1046.5, 0.92]];
    for (const [freq, at] of notes) {
      const osc = ctx.createOscillator();
      const env = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      env.gain.setValueAtTime(0, t0 + at);
      env.gain.linearRampToValueAtTime(0.25, t0 + at + 0.015);
      env.gain.exponentialRampToValueAtTime(0.001, t0 + at + 0.45);
      osc.connect(env).connect(this.out!);
      osc.start(t0 + at);
      osc.stop(t0 + at + 0.5);
    }
  }
}

export type NoticePermission = NotificationPermission | "unsupported";

/** The notification of an incoming call, shown only while the tab is hidden. */
export class CallNotice {
  private shown?: Notification;

  static permission(): NoticePermission {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  /** Asks the browser (after the person pressed the button that offers it). */
  static async ask(): Promise<NoticePermission> {
    if (!("Notification" in window)) return "unsupported";
    return Notification.requestPermission();
  }

  /** Shows it if the tab is hidden and notifications are allowed; a click brings the tab back. */
  show(title: string, body: string, tag: string) {
    if (document.visibilityState !== "hidden" || CallNotice.permission() !== "granted" || this.shown) return;
    const notice = new Notification(title, { body, tag, requireInteraction: true });
    notice.onclick = () => {
      window.focus();
      notice.close();
    };
    this.shown = notice;
  }

  close() {
    this.shown?.close();
    this.shown = undefined;
  }

  /** For the tests: what is shown. */
  current() {
    const n = this.shown;
    return n ? { title: n.title, body: n.body, tag: n.tag } : null;
  }
}
