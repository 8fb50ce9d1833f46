// Opt-in desktop notifications of signals, for a dashboard left in a background tab. Off until
// the viewer turns the switch on (the browser then asks for its permission); the choice is
// remembered in localStorage. They are shown only while the tab is hidden: a visible page has
// its toasts, and a second cue for the same signal would only be noise.

import { setText } from "./dom.js";
import { signalDetail, signalTitle } from "./signals-feed.js";

const STORAGE_KEY = "stock-dashboard.desktop-notifications";
/** The caught-up signals a summary names before "and N more". */
const SUMMARY_NAMES = 3;

const STATUS = {
  off: "Off. When on, each new signal shows a desktop notification while this tab is in the background.",
  on: "On: each new signal shows a desktop notification while this tab is in the background.",
  unsupported: "This browser cannot show desktop notifications.",
  denied:
    "Blocked by the browser: allow notifications for this site in its settings, then turn this on again.",
  dismissed: "Not allowed: the browser's question was dismissed. Turn this on to be asked again.",
  forgotten: "Off: the browser no longer has the permission. Turn this on to allow notifications again.",
};

/** The server's line in the page's words, where the server's is not at hand. */
const lineOf = signal => `${signalTitle(signal)} ${signalDetail(signal)}`;

const supported = () => typeof window.Notification === "function";

/** localStorage may be missing or refuse (private windows, storage blocked): the switch then just forgets. */
const storage = {
  wanted: () => {
    try {
      return window.localStorage.getItem(STORAGE_KEY) === "on";
    } catch {
      return false;
    }
  },
  remember: on => {
    try {
      if (on) window.localStorage.setItem(STORAGE_KEY, "on");
      else window.localStorage.removeItem(STORAGE_KEY);
    } catch {
      // Nothing to keep it in: it stays on for this page only.
    }
  },
};

export class DesktopNotifications {
  /**
   * @param {object} parts
   * @param {HTMLInputElement} parts.toggle a checkbox (role="switch")
   * @param {HTMLElement} parts.status what the switch's state means, or why it turned itself off
   * @param {(symbol: string) => void} parts.onSelect a click on a notification opens its symbol
   */
  constructor({ toggle, status, onSelect }) {
    this.toggle = toggle;
    this.status = status;
    this.onSelect = onSelect;
    this.enabled = false;
    this.state = "off";
    /** Notifications shown so far (describe(), for the browser tests). */
    this.shown = 0;
  }

  start() {
    this.toggle.addEventListener("change", () => void this.switchTo(this.toggle.checked));
    if (!storage.wanted()) return this.show("off");
    // Asking needs a click in most browsers: on load only a permission already given counts.
    if (!supported()) return this.show("unsupported");
    const permission = window.Notification.permission;
    if (permission === "granted") this.show("on");
    else this.show(permission === "denied" ? "denied" : "forgotten");
  }

  async switchTo(on) {
    if (!on) {
      storage.remember(false);
      return this.show("off");
    }
    if (!supported()) return this.show("unsupported");
    let permission = window.Notification.permission;
    if (permission === "default") {
      this.toggle.disabled = true;
      try {
        permission = await window.Notification.requestPermission();
      } finally {
        this.toggle.disabled = false;
      }
    }
    if (permission !== "granted") {
      storage.remember(false);
      return this.show(permission === "denied" ? "denied" : "dismissed");
    }
    storage.remember(true);
    this.show("on");
  }

  show(state) {
    this.state = state;
    this.enabled = state === "on";
    this.toggle.checked = this.enabled;
    setText(this.status, STATUS[state]);
  }

  /** Whether a signal arriving now gets a desktop notification: switched on, and the tab hidden. */
  wanted() {
    if (!this.enabled || document.visibilityState !== "hidden") return false;
    // Revoked in the browser's settings since: say so rather than fail silently.
    if (window.Notification.permission !== "granted") {
      this.show(window.Notification.permission === "denied" ? "denied" : "dismissed");
      return false;
    }
    return true;
  }

  /** A live signal; `message` is the server's line for it. */
  notify(signal, message) {
    if (!this.wanted()) return;
    const body = message ?? lineOf(signal);
    // The tag is the signal's identity: the same signal again replaces its notification.
    this.open(signalTitle(signal), body, `${signal.symbol}-${signal.seq}`, signal.symbol);
  }

  /**
   * The signals caught up after a reconnect, oldest first: one notification for them all, not a
   * flood of old news (`more`: there may have been others, not fetched). The REST API has no
   * server line for them.
   */
  notifyMissed(signals, { more = false } = {}) {
    if (signals.length === 0 || !this.wanted()) return;
    if (signals.length === 1 && !more) {
      const [s] = signals;
      this.open(signalTitle(s), lineOf(s), `${s.symbol}-${s.seq}`, s.symbol);
      return;
    }
    const newest = [...signals].reverse();
    const names = newest.slice(0, SUMMARY_NAMES).map(signalTitle).join(", ");
    const others = newest.length > SUMMARY_NAMES ? ` and ${newest.length - SUMMARY_NAMES} more` : "";
    const count = `${signals.length}${more ? "+" : ""}`;
    this.open(`${count} signals while disconnected`, `${names}${others}`, "missed-signals", null);
  }

  open(title, body, tag, symbol) {
    let notification;
    try {
      notification = new window.Notification(title, { body, tag });
    } catch (err) {
      // Some browsers (Chrome on Android) allow notifications only from a service worker.
      console.warn("desktop notification failed", err);
      return;
    }
    this.shown += 1;
    notification.addEventListener("click", () => {
      window.focus();
      if (symbol) this.onSelect(symbol);
      notification.close();
    });
  }

  describe() {
    return { enabled: this.enabled, state: this.state, shown: this.shown };
  }
}
