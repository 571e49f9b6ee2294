// The live stream of one enquiry's citizen: snapshot or resume, then changes in version order.
//
// The stream remembers the (epoch, version) it last applied. Whenever the connection ends for any reason
// other than the enquiry ending, it reconnects by itself (at once when the server asked for it, otherwise
// after a short, growing, jittered pause) and asks to resume from there: the server then sends exactly
// the changes missed, or a fresh snapshot when it cannot. A change that does not follow on from the last
// version is never applied: the stream reconnects without a position and starts from a snapshot.

import { SignedOut, streamUrl } from "./auth.js";

const CLOSE_SHUTDOWN = 1012;
const CLOSE_LIFETIME = 4001;
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_UNKNOWN_ENQUIRY = 4404;
const CLOSE_ENQUIRY_ENDED = 4410;
const CLOSE_CITIZEN_ERASED = 4411;

// The server sends a heartbeat every 10 s by default; silence for this long means the connection is dead
// even if the socket has not noticed.
const SILENCE_MS = 25_000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

export class ContextStream {
  /**
   * @param {string} enquiryId
   * @param {{snapshot, change, state, presence}} handlers
   *   snapshot(context), change(message), state(name, detail), presence(viewers)
   */
  constructor(enquiryId, handlers) {
    this.path = `/v1/enquiries/${encodeURIComponent(enquiryId)}/stream`;
    this.handlers = handlers;
    this.position = null; // {epoch, version} of the last applied message
    this.socket = null;
    this.failures = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.silenceTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    if (this.socket) this.socket.close(1000, "desk closed the enquiry");
    this.socket = null;
  }

  async connect() {
    if (this.stopped) return;
    this.handlers.state(this.failures === 0 && this.position === null ? "connecting" : "reconnecting");
    let url;
    try {
      const params = this.position ? { epoch: this.position.epoch, version: String(this.position.version) } : {};
      url = await streamUrl(this.path, params);
    } catch (error) {
      if (error instanceof SignedOut) {
        this.stopped = true;
        this.handlers.state("signed-out", error.message);
        return;
      }
      this.retryLater();
      return;
    }
    if (this.stopped) return;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("message", (event) => this.receive(socket, event));
    socket.addEventListener("close", (event) => this.closed(socket, event));
    this.watchSilence(socket);
  }

  watchSilence(socket) {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (socket === this.socket) socket.close(4000, "no heartbeat");
    }, SILENCE_MS);
  }

  receive(socket, event) {
    if (socket !== this.socket) return;
    this.watchSilence(socket);
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (message.type) {
      case "snapshot":
        this.position = { epoch: message.context.epoch, version: message.context.version };
        this.live();
        this.handlers.snapshot(message.context);
        break;
      case "resumed":
        this.position = { epoch: message.epoch, version: message.version };
        this.live();
        break;
      case "change":
        if (this.position && message.epoch === this.position.epoch && message.version <= this.position.version) {
          return; // already applied
        }
        if (!this.position || message.epoch !== this.position.epoch || message.version !== this.position.version + 1) {
          // A gap: never show a timeline with a hole in it. Start again from a snapshot.
          this.position = null;
          socket.close(4000, "gap");
          return;
        }
        this.position = { epoch: message.epoch, version: message.version };
        this.handlers.change(message);
        break;
      case "heartbeat":
        if (message.live) this.live();
        else this.handlers.state("delayed");
        break;
      case "presence":
        this.handlers.presence(message.viewers);
        break;
      case "reconnect":
        this.position = { epoch: message.epoch, version: message.version };
        break;
      default:
        break;
    }
  }

  live() {
    this.failures = 0;
    this.handlers.state("live");
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearTimeout(this.silenceTimer);
    if (this.stopped) return;
    switch (event.code) {
      case CLOSE_ENQUIRY_ENDED:
        this.stopped = true;
        this.handlers.state("ended");
        return;
      case CLOSE_UNKNOWN_ENQUIRY:
        this.stopped = true;
        this.handlers.state("failed", "This enquiry no longer exists.");
        return;
      case CLOSE_FORBIDDEN:
        this.stopped = true;
        this.handlers.state("failed", "You are not allowed to view this citizen.");
        return;
      case CLOSE_CITIZEN_ERASED:
        this.stopped = true;
        this.handlers.state("failed", "This citizen's data has been erased at their request.");
        return;
      case CLOSE_UNAUTHENTICATED:
        this.stopped = true;
        this.handlers.state("signed-out", "Your sign-in has expired. Please sign in again.");
        return;
      case CLOSE_SHUTDOWN:
      case CLOSE_LIFETIME:
        // Asked to move on (a rolling restart, or the stream's lifetime): reconnect at once.
        this.connect();
        return;
      default:
        this.retryLater();
    }
  }

  retryLater() {
    const base = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    const delay = base / 2 + Math.random() * base;
    this.handlers.state("offline", Math.max(1, Math.round(delay / 1000)));
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
