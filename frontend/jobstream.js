// A job's event stream over SSE that loses nothing across reconnects.
// EventSource retries by itself with Last-Event-ID; when it gives up (or the user asks) the
// stream is reopened with ?after=<last id>. Ids are compared, so a replayed event is dropped.

import { EVENT_TYPES, STREAM_CLOSING, TERMINAL } from "./contract/events.js";
import { compareStreamIds } from "./rundata.js";

export class JobStream {
  /**
   * url: the events URL; onEvent(event, id) for each new event in order; onState(state) with
   * "connecting" | "open" | "reconnecting" | "ended" | "closed".
   */
  constructor(url, { onEvent, onState = () => {}, EventSourceImpl = globalThis.EventSource, retryMs = 2000 } = {}) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.EventSourceImpl = EventSourceImpl;
    this.retryMs = retryMs;
    this.lastId = null;
    this.source = null;
    this.state = "closed";
    this.retryTimer = null;
    this.received = 0;
    this.duplicates = 0;
  }

  urlFor(after) {
    if (!after) return this.url;
    const sep = this.url.includes("?") ? "&" : "?";
    return `${this.url}${sep}after=${encodeURIComponent(after)}`;
  }

  open() {
    this.closeSource();
    const source = new this.EventSourceImpl(this.urlFor(this.lastId));
    this.source = source;
    this.setState("connecting");
    const receive = (message) => this.receive(message);
    for (const type of EVENT_TYPES) source.addEventListener(type, receive);
    // The API is shutting down: it closes the stream next and EventSource reconnects after the last id.
    source.addEventListener(STREAM_CLOSING, () => this.setState("reconnecting"));
    source.onopen = () => this.setState("open");
    source.onerror = () => {
      if (this.source !== source || this.state === "ended") return;
      // CLOSED: the browser gave up (e.g. a 5xx on reconnect); reopen ourselves from lastId.
      if (source.readyState === 2) {
        this.closeSource();
        this.setState("reconnecting");
        this.retryTimer = setTimeout(() => this.open(), this.retryMs);
      } else {
        this.setState("reconnecting");
      }
    };
    return this;
  }

  receive(message) {
    const id = message.lastEventId;
    if (id && this.lastId && compareStreamIds(id, this.lastId) <= 0) {
      this.duplicates++;
      return;
    }
    if (id) this.lastId = id;
    const event = JSON.parse(message.data);
    this.received++;
    this.onEvent(event, id);
    if (TERMINAL.has(event.type)) {
      // The server ends the stream here; without close() EventSource would reconnect forever.
      this.closeSource();
      this.setState("ended");
    }
  }

  /** Drop the connection and reopen it after the last event seen (nothing lost, nothing twice). */
  reconnect() {
    if (this.state === "ended") return;
    this.open();
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }

  closeSource() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  close() {
    this.closeSource();
    if (this.state !== "ended") this.setState("closed");
  }
}
