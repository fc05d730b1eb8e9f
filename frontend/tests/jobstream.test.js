// The SSE client: resumes after the last id, drops replays, closes at the terminal event.
import assert from "node:assert/strict";
import { test } from "node:test";

import { JobStream } from "../jobstream.js";

/** A stand-in for the browser's EventSource that the test drives by hand. */
class ScriptedEventSource {
  static opened = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = new Map();
    this.closed = false;
    ScriptedEventSource.opened.push(this);
  }

  addEventListener(type, fn) {
    this.listeners.set(type, fn);
  }

  deliver(id, event) {
    this.listeners.get(event.type)({ lastEventId: id, data: JSON.stringify(event) });
  }

  fail(readyState) {
    this.readyState = readyState;
    this.onerror?.();
  }

  close() {
    this.closed = true;
    this.readyState = 2;
  }
}

function open(retryMs = 1) {
  ScriptedEventSource.opened = [];
  const received = [];
  const states = [];
  const stream = new JobStream("/api/jobs/j/events", {
    onEvent: (event, id) => received.push([id, event.type]),
    onState: (s) => states.push(s),
    EventSourceImpl: ScriptedEventSource,
    retryMs,
  }).open();
  return { stream, received, states };
}

test("a manual reconnect resumes with ?after=<last id> and drops anything replayed", () => {
  const { stream, received } = open();
  const first = ScriptedEventSource.opened[0];
  assert.equal(first.url, "/api/jobs/j/events");
  first.deliver("1-0", { type: "queued" });
  first.deliver("2-0", { type: "started" });
  stream.reconnect();
  assert.ok(first.closed);
  const second = ScriptedEventSource.opened[1];
  assert.equal(second.url, "/api/jobs/j/events?after=2-0");
  second.deliver("2-0", { type: "started" }); // a replay of what we have: dropped
  second.deliver("3-0", { type: "step" });
  assert.deepEqual(received, [["1-0", "queued"], ["2-0", "started"], ["3-0", "step"]]);
  assert.equal(stream.duplicates, 1);
});

test("when the browser gives up (CLOSED), the stream reopens itself after the last id", async () => {
  const { stream, states } = open(5);
  const first = ScriptedEventSource.opened[0];
  first.deliver("10-1", { type: "step" });
  first.fail(0); // CONNECTING: the browser retries with Last-Event-ID itself
  assert.equal(ScriptedEventSource.opened.length, 1);
  first.fail(2);
  assert.equal(states.at(-1), "reconnecting");
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(ScriptedEventSource.opened.length, 2);
  assert.equal(ScriptedEventSource.opened[1].url, "/api/jobs/j/events?after=10-1");
  stream.close();
});

test("the terminal event closes the source so the browser does not reconnect forever", () => {
  const { stream, states } = open();
  const source = ScriptedEventSource.opened[0];
  source.deliver("1-0", { type: "started" });
  source.deliver("2-0", { type: "finished" });
  assert.ok(source.closed);
  assert.equal(stream.state, "ended");
  assert.equal(states.at(-1), "ended");
  stream.reconnect();
  assert.equal(ScriptedEventSource.opened.length, 1, "nothing to resume after the end");
});

test("it listens to every event type of the shared vocabulary, and to the API's shutdown notice", async () => {
  const { EVENT_TYPES, STREAM_CLOSING } = await import("../contract/events.js");
  open();
  const source = ScriptedEventSource.opened[0];
  assert.deepEqual([...source.listeners.keys()].sort(), [...EVENT_TYPES, STREAM_CLOSING].sort());
});

test("stream_closing (no id) is no event: the stream reconnects after the last real id", () => {
  const { stream, received, states } = open();
  const source = ScriptedEventSource.opened[0];
  source.deliver("1-0", { type: "queued" });
  source.listeners.get("stream_closing")({ lastEventId: "", data: JSON.stringify({ type: "stream_closing" }) });
  assert.deepEqual(received, [["1-0", "queued"]]);
  assert.equal(stream.lastId, "1-0");
  assert.equal(states.at(-1), "reconnecting");
  stream.reconnect();
  assert.equal(ScriptedEventSource.opened[1].url, "/api/jobs/j/events?after=1-0");
});
