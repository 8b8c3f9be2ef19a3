// Stop strings, matched on the text as it streams: text that might be the start of a stop string is held back
// until the next text decides, so no character past a match is ever sent, and the match itself never is. The
// server matches stop strings itself (the engine is then aborted), on exactly the text the client sees: a chat's
// content (not its reasoning or tool arguments), a completion's text.

export class StopStringMatcher {
  private held = "";
  private matched: string | undefined;

  constructor(private readonly stops: readonly string[]) {}

  /** The stop string that matched, once one has. */
  get stoppedBy(): string | undefined {
    return this.matched;
  }

  /** Takes more text; returns what may be sent now (text after a match is dropped). */
  push(text: string): string {
    if (this.matched !== undefined) return "";
    const all = this.held + text;
    let at = -1;
    for (const stop of this.stops) {
      if (stop === "") continue;
      const i = all.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.matched = stop;
      }
    }
    if (at >= 0) {
      this.held = "";
      return all.slice(0, at);
    }
    const keep = this.heldSuffixLength(all);
    this.held = all.slice(all.length - keep);
    return all.slice(0, all.length - keep);
  }

  /** The text still held back (no stop string came): send it at the end. */
  flush(): string {
    const out = this.held;
    this.held = "";
    return out;
  }

  /** Length of the longest end of `text` that begins some stop string. */
  private heldSuffixLength(text: string): number {
    let keep = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > keep; n--) {
        if (stop.startsWith(text.slice(text.length - n))) {
          keep = n;
          break;
        }
      }
    }
    return keep;
  }
}
