// The live WebSocket (/ws) with automatic reconnection. Its state is what the badge shows, and
// it changes only on what the socket itself reports: "connecting" until the first open,
// "live" while a socket is open (and whenever a message arrives), "reconnecting" from a close
// until the next open. Nothing else (a slow REST call, a failed chart) can hold the badge.

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
/** Armed only once the server has sent a heartbeat, so servers that send none are never timed out. */
const HEARTBEAT_TIMEOUT_MS = 45000;

export class LiveConnection {
  /**
   * @param {object} handlers
   * @param {(state: string, detail: object) => void} handlers.onState
   * @param {(message: object) => void} handlers.onMessage
   * @param {(opens: number, detail: {lostAt: number | null}) => void} handlers.onOpen called on
   *   every open; `opens` counts them from 1, `lostAt` is when the last open socket closed (ms)
   */
  constructor({ onState, onMessage, onOpen }) {
    this.onState = onState;
    this.onMessage = onMessage;
    this.onOpen = onOpen;
    this.state = "connecting";
    this.attempt = 0;
    this.opens = 0;
    this.socket = null;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.heartbeats = false;
    this.nextRetryAt = null;
    /** Date.now() when the last socket that had opened closed: what the page missed began then. */
    this.lostAt = null;
  }

  start() {
    window.addEventListener("online", () => this.retryNow());
    this.open();
  }

  url() {
    const url = new URL("ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  open() {
    this.retryTimer = null;
    this.nextRetryAt = null;
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      if (this.socket !== socket) return;
      opened = true;
      this.attempt = 0;
      this.opens += 1;
      // First the page learns it must reload, then that it is live (which restarts its polling).
      this.onOpen(this.opens, { lostAt: this.lostAt });
      this.setState("live");
    });
    socket.addEventListener("message", event => {
      if (this.socket !== socket) return;
      // A message proves the socket works, whatever the badge said before.
      if (this.state !== "live") this.setState("live");
      this.armHeartbeat(socket);
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "heartbeat") this.heartbeats = true;
      else this.onMessage(message);
    });
    // "error" is always followed by "close": one place decides about retrying.
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (opened) this.lostAt = Date.now();
      window.clearTimeout(this.heartbeatTimer);
      this.scheduleRetry();
    });
  }

  armHeartbeat(socket) {
    if (!this.heartbeats) return;
    window.clearTimeout(this.heartbeatTimer);
    // A socket can stay "open" on a dead network path: silence past the heartbeat means it is gone.
    this.heartbeatTimer = window.setTimeout(() => socket.close(), HEARTBEAT_TIMEOUT_MS);
  }

  /** Exponential backoff with jitter, so a restarted server is not hit by every browser at once. */
  scheduleRetry() {
    const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    // Before the first open there is nothing to get back to: still "connecting".
    this.setState(this.opens === 0 ? "connecting" : "reconnecting");
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  retryNow() {
    if (this.retryTimer === null) return;
    window.clearTimeout(this.retryTimer);
    this.open();
  }

  setState(state) {
    this.state = state;
    this.onState(state, { attempt: this.attempt, nextRetryAt: this.nextRetryAt });
  }
}
