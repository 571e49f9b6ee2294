// The live stream of one enquiry's citizen: snapshot or resume, then changes in version order.
//
// The stream remembers the (epoch, version) it last applied. Whenever the connection ends for any reason
// other than the enquiry ending, it reconnects by itself (at once when the server asked a stream that had
// stayed live to move on, otherwise after a short, growing, jittered pause) and asks to resume from there: the server then
// sends exactly the changes missed, or a fresh snapshot when it cannot. A change that does not follow on
// from the last version is never applied: the stream reconnects without a position and starts from a
// snapshot.
//
// The pause grows with every connection that ends before it has stayed live for STABLE_MS, whatever it
// received: a server that accepts and then drops every stream (a crash loop behind a load balancer) is
// not hammered by every desk at once. Once stopped (the enquiry closed), a stream calls none of its
// handlers again, whatever its socket, its timers or its pending ticket request still do.

import { SignedOut, streamUrl } from "./auth.js";

const CLOSE_SHUTDOWN = 1012;
const CLOSE_LIFETIME = 4001;
const CLOSE_INVALID = 4400;
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_UNKNOWN_ENQUIRY = 4404;
const CLOSE_ENQUIRY_ENDED = 4410;
const CLOSE_CITIZEN_ERASED = 4411;
const CLOSE_RATE_LIMITED = 4429;

// The server sends a heartbeat every 10 s by default; silence for this long means the connection is dead
// even if the socket has not noticed.
const SILENCE_MS = 25_000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
// A connection live for this long resets the pause before the next reconnection.
const STABLE_MS = 10_000;
// Over the rate limit (4429), the next try waits at least this long: a quick retry would only be refused.
const RATE_LIMITED_MS = 10_000;
// A 4401 is a lost or used ticket as often as an expired sign-in: a new ticket is asked for (which a token
// the server no longer takes is refused) before the agent is signed out, this many times in a row.
const UNAUTHENTICATED_RETRIES = 1;

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
    this.liveSince = null; // when the current connection went live (a snapshot or a resume), else null
    this.renewed = false; // the sign-in was renewed while a ticket was being asked for
    this.refusedTickets = 0; // 4401s in a row, none of them after going live
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

  /** Moves to a new connection now, resuming where it is, without saying the connection was lost: the
   * sign-in was renewed, and the open connection would end with the old token (4401). */
  refresh() {
    const socket = this.socket;
    if (this.stopped) return;
    if (socket === null) {
      // Between connections: a ticket being asked for now may carry the old token, so the connection
      // under way asks again (connect); a later one has the new token anyway.
      this.renewed = true;
      return;
    }
    this.socket = null;
    clearTimeout(this.silenceTimer);
    if (this.liveSince !== null && Date.now() - this.liveSince >= STABLE_MS) this.failures = 0;
    this.liveSince = null;
    socket.close(1000, "sign-in renewed");
    this.connect({ quiet: true });
  }

  /** Calls a handler, unless the stream has stopped: its late events must never reach the next enquiry. */
  notify(name, ...args) {
    if (!this.stopped) this.handlers[name](...args);
  }

  /** Stops for good, then says why (the last handler call a stream makes). */
  end(state, detail) {
    this.notify("state", state, detail);
    this.stopped = true;
  }

  async connect({ quiet = false } = {}) {
    if (this.stopped) return;
    if (!quiet) this.notify("state", this.failures === 0 && this.position === null ? "connecting" : "reconnecting");
    let url;
    try {
      do {
        this.renewed = false;
        const params = this.position ? { epoch: this.position.epoch, version: String(this.position.version) } : {};
        url = await streamUrl(this.path, params);
      } while (this.renewed && !this.stopped); // the sign-in was renewed meanwhile: a ticket of the new token
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof SignedOut) {
        this.end("signed-out", error.message);
        return;
      }
      this.retryLater();
      return;
    }
    if (this.stopped) return;
    const socket = new WebSocket(url);
    this.socket = socket;
    this.liveSince = null;
    socket.addEventListener("message", (event) => this.receive(socket, event));
    socket.addEventListener("close", (event) => this.closed(socket, event));
    this.watchSilence(socket);
  }

  watchSilence(socket) {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (socket !== this.socket) return;
      // On a dead path the browser's close handshake can take a minute before "close" fires: the socket is
      // let go at once, and the stream reconnects as after any other loss.
      socket.close(4000, "no heartbeat");
      this.closed(socket, { code: 4000 });
    }, SILENCE_MS);
  }

  receive(socket, event) {
    if (socket !== this.socket || this.stopped) return;
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
        this.notify("snapshot", message.context);
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
        this.notify("change", message);
        break;
      case "heartbeat":
        if (message.live) this.live();
        else this.notify("state", "delayed");
        break;
      case "presence":
        this.notify("presence", message.viewers);
        break;
      case "reconnect":
        this.position = { epoch: message.epoch, version: message.version };
        break;
      default:
        break;
    }
  }

  live() {
    if (this.liveSince === null) this.liveSince = Date.now();
    this.refusedTickets = 0;
    this.notify("state", "live");
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearTimeout(this.silenceTimer);
    if (this.stopped) return;
    const stable = this.liveSince !== null && Date.now() - this.liveSince >= STABLE_MS;
    if (stable) this.failures = 0;
    this.liveSince = null;
    switch (event.code) {
      case CLOSE_ENQUIRY_ENDED:
        this.end("ended");
        return;
      case CLOSE_UNKNOWN_ENQUIRY:
        this.end("failed", "This enquiry no longer exists.");
        return;
      case CLOSE_FORBIDDEN:
        this.end("failed", "You are not allowed to view this citizen.");
        return;
      case CLOSE_CITIZEN_ERASED:
        this.end("failed", "This citizen's data has been erased at their request.");
        return;
      case CLOSE_UNAUTHENTICATED:
        if (this.refusedTickets >= UNAUTHENTICATED_RETRIES) {
          this.end("signed-out", "Your sign-in has expired. Please sign in again.");
          return;
        }
        // The ticket may have been lost or used on the way: a new one is asked for, with the token, which
        // the server refuses (401, signing the agent out) if the sign-in itself has ended.
        this.refusedTickets += 1;
        this.retryLater();
        return;
      case CLOSE_INVALID:
        if (this.position !== null) {
          // The position to resume from was refused: start again from a snapshot.
          this.position = null;
          this.retryLater();
          return;
        }
        // The desk's own request, refused as it stands: trying it again would be refused again.
        this.end("halted", "The live view could not be opened: the server refused the request. Reload the page to try again.");
        return;
      case CLOSE_RATE_LIMITED:
        this.retryLater(RATE_LIMITED_MS);
        return;
      case CLOSE_SHUTDOWN:
      case CLOSE_LIFETIME:
        // Asked to move on (a rolling restart, or the stream's lifetime): a stream that had stayed live
        // reconnects at once; one closed sooner waits as after any other loss, or a server that closes
        // every stream as it opens would be asked again and again without a pause.
        if (stable) this.connect();
        else this.retryLater();
        return;
      default:
        this.retryLater();
    }
  }

  /** Reconnects after a growing, jittered pause (at least `minimumMs`). */
  retryLater(minimumMs = 0) {
    const base = Math.max(BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)], minimumMs);
    this.failures += 1;
    const delay = base / 2 + Math.random() * base;
    this.notify("state", "offline", Math.max(1, Math.round(delay / 1000)));
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
