"""TDMQ for CMQ on loopback: the topics and queues CI publishes job results to (`CallBackType=TDMQ`),
and the CMQ topic trigger that hands a topic's messages to the callback function.

- A message published to a **topic** is delivered to the subscribed function as SCF's CMQ trigger
  event (`{"Records": [{"CMQ": {...}}]}`, `../shared/platform.md` §2), asynchronously. Messages that
  arrive close together are merged into one event (up to `mq_batch`), and an event whose invocation
  fails is delivered again (`mq_redeliveries` times), as the trigger does.
- A **queue** has no push trigger: its messages stay in the queue (`GET /_devstack/tdmq`), which is
  what the real service does when nothing polls it.

Unverified details are switches, settable with `/_devstack/config`:
- `mq_body`: `plain` (the callback body itself) | `envelope` (that body inside a JSON envelope);
- `mq_msg_tag`: `string` (`"tag1,tag2"`) | `array` (`["tag1", "tag2"]`);
and faults for chaos: `mq_drop_rate`, `mq_duplicate_rate`, `mq_reorder` (seconds of random delay).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Optional

CHOICES = {"mq_body": ("plain", "envelope"), "mq_msg_tag": ("string", "array")}
DEFAULTS: dict[str, Any] = {
    "mq_body": "plain",
    "mq_msg_tag": "string",
    "mq_batch": 4,            # messages merged into one trigger event at most
    "mq_batch_window": 0.05,  # seconds a first message waits for others to join its event
    "mq_redeliveries": 2,     # deliveries of a failed event after the first
    "mq_drop_rate": 0.0,
    "mq_duplicate_rate": 0.0,
    "mq_reorder": 0.0,
}

Invoke = Callable[[dict[str, Any]], Any]


class CmqBroker:
    """Topics and queues by name; topics with a subscriber push to it."""

    def __init__(self, owner: str = "1250000000"):
        self.owner = owner
        self.config: dict[str, Any] = dict(DEFAULTS)
        self.subscribers: dict[str, Invoke] = {}       # topic name -> invoke(event)
        self.default_subscriber: Optional[Invoke] = None
        self.queues: dict[str, list[dict[str, Any]]] = {}
        self.published: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._inflight = 0
        self._cv = threading.Condition(self._lock)

    # --- configuration -----------------------------------------------------------------------
    def configure(self, values: dict[str, Any], validate_only: bool = False) -> None:
        for key, value in values.items():
            if key in CHOICES and value not in CHOICES[key]:
                raise ValueError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
            if key not in CHOICES and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key}: expected a number >= 0, got {value!r}")
        if validate_only:
            return
        with self._lock:
            self.config.update({k: v for k, v in values.items() if k in DEFAULTS})

    def subscribe(self, topic: str, invoke: Invoke) -> None:
        self.subscribers[topic] = invoke

    # --- what CI calls ---------------------------------------------------------------------------
    def publish(self, region: str, mode: str, name: str, body: str, job_id: str = "") -> None:
        """CI delivers one job result (`body`, the callback document) to a topic or a queue."""
        cfg = self.config
        msg = {"msgId": uuid.uuid4().hex[:16], "body": self._wrap(body, job_id), "job_id": job_id,
               "region": region, "mode": mode, "name": name, "time": time.time()}
        with self._lock:
            self.published.append({k: v for k, v in msg.items() if k != "body"})
        if mode == "Queue":
            with self._lock:
                self.queues.setdefault(name, []).append(msg)
            return
        if random.random() < float(cfg.get("mq_drop_rate") or 0):
            self._record(msg, "dropped (injected)")
            return
        copies = 2 if random.random() < float(cfg.get("mq_duplicate_rate") or 0) else 1
        for _ in range(copies):
            delay = random.uniform(0, float(cfg.get("mq_reorder") or 0))
            self._schedule(name, dict(msg), delay)

    def _wrap(self, body: str, job_id: str) -> str:
        if self.config.get("mq_body") == "envelope":
            return json.dumps({"Type": "TaskFinish", "JobId": job_id, "msgBody": body})
        return body

    # --- the topic trigger -------------------------------------------------------------------------
    def _schedule(self, topic: str, msg: dict[str, Any], delay: float) -> None:
        with self._lock:
            self._inflight += 1
        t = threading.Timer(delay, self._enqueue, args=(topic, msg))
        t.daemon = True
        t.start()

    def _enqueue(self, topic: str, msg: dict[str, Any]) -> None:
        with self._lock:
            batch = self._pending.setdefault(topic, [])
            batch.append(msg)
            first = len(batch) == 1
        if first:
            t = threading.Timer(float(self.config.get("mq_batch_window") or 0), self._flush, args=(topic,))
            t.daemon = True
            t.start()

    def _flush(self, topic: str) -> None:
        with self._lock:
            msgs = self._pending.pop(topic, [])
        size = max(1, int(self.config.get("mq_batch") or 1))
        for i in range(0, len(msgs), size):
            self._deliver(topic, msgs[i:i + size])

    def event(self, topic: str, msgs: list[dict[str, Any]]) -> dict[str, Any]:
        """SCF's CMQ topic-trigger event for `msgs`."""
        tags: Any = ["ciflow", "TaskFinish"]
        if self.config.get("mq_msg_tag") == "string":
            tags = ",".join(tags)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {"Records": [{"CMQ": {
            "type": "topic", "topicOwner": int(self.owner), "topicName": topic,
            "subscriptionName": f"{topic}-callback", "publishTime": now, "msgId": m["msgId"],
            "requestId": uuid.uuid4().hex[:16], "msgBody": m["body"], "msgTag": tags}} for m in msgs]}

    def _deliver(self, topic: str, msgs: list[dict[str, Any]]) -> None:
        invoke = self.subscribers.get(topic) or self.default_subscriber
        try:
            if invoke is None:
                for m in msgs:
                    self._record(m, "no subscriber")
                return
            event = self.event(topic, msgs)
            attempts = 1 + int(self.config.get("mq_redeliveries") or 0)
            for attempt in range(1, attempts + 1):
                try:
                    invoke(event)
                except Exception as exc:  # noqa: BLE001 - the trigger redelivers any function error
                    for m in msgs:
                        self._record(m, f"attempt {attempt}: {type(exc).__name__}", attempt, len(msgs))
                    if attempt < attempts:
                        time.sleep(0.2 * attempt)
                    continue
                for m in msgs:
                    self._record(m, "delivered", attempt, len(msgs))
                return
        finally:
            with self._lock:
                self._inflight -= len(msgs)
                self._cv.notify_all()

    def _record(self, msg: dict[str, Any], outcome: str, attempt: int = 0, batch: int = 0) -> None:
        with self._lock:
            self.deliveries.append({"msgId": msg["msgId"], "job_id": msg.get("job_id", ""), "outcome": outcome,
                                    "attempt": attempt, "batch": batch, "time": time.time()})

    def idle(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._inflight == 0, timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"config": dict(self.config), "published": list(self.published),
                    "deliveries": list(self.deliveries),
                    "queues": {k: [{x: y for x, y in m.items() if x != "body"} for m in v]
                               for k, v in self.queues.items()}}
