// queues.* and concurrencyLimits.* of the official SDK: every call, in the shapes its zod
// schemas accept. The version declares task/test-limited (total 2, 1 per key), the named
// limit test-shared (total 3) and the custom queue emails.
import { concurrencyLimits, queues } from "@trigger.dev/sdk";
import { runs, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const OWN = "task/test-limited";
const SHARED = "test-shared";
const taskQueue = { type: "task", name: "test-limited" };
const when = (d) => (d instanceof Date ? "date" : d === null ? null : typeof d);

await step("queues-list", async () => {
  const names = [];
  for await (const q of queues.list({ perPage: 2 })) names.push(q.name);
  const first = await queues.list({ perPage: 2 });
  return { names, pagination: first.pagination, firstPage: first.data.length };
});
const own = await step("queues-retrieve-task", async () => await queues.retrieve(taskQueue));
if (own) {
  await step("queues-retrieve-id", async () => await queues.retrieve(own.id));
}
await step("queues-retrieve-custom", async () =>
  await queues.retrieve({ type: "custom", name: "emails" }));
await step("queues-pause", async () => await queues.pause(taskQueue));
await step("queues-resume", async () => await queues.resume(taskQueue));
await step("queues-override", async () => {
  const q = await queues.overrideConcurrencyLimit(taskQueue, 7);
  return { ...q, overriddenAt: when(q.concurrency?.overriddenAt) };
});
await step("queues-reset", async () => await queues.resetConcurrencyLimit(taskQueue));
await step("queues-override-custom", async () =>
  await queues.overrideConcurrencyLimit({ type: "custom", name: "emails" }, 3));
await step("queues-retrieve-unknown", async () =>
  await queues.retrieve({ type: "task", name: "no-such-task" }));

await step("limits-list", async () => {
  const names = [];
  for await (const l of concurrencyLimits.list({ perPage: 1 })) names.push(l.name);
  const first = await concurrencyLimits.list({ perPage: 1 });
  return { names, pagination: first.pagination };
});
await step("limits-retrieve", async () => await concurrencyLimits.retrieve(OWN));
await step("limits-retrieve-key", async () =>
  await concurrencyLimits.retrieve(OWN, { concurrencyKey: "user_1" }));
await step("limits-override", async () => {
  const l = await concurrencyLimits.override(OWN, { total: 5 });
  return { ...l, overriddenAt: when(l.total.overriddenAt) };
});
await step("limits-override-key", async () => {
  const k = await concurrencyLimits.override(OWN, { concurrencyKey: "user_1", perKey: 0, ttl: "1h" });
  return { ...k, expiresAt: when(k.perKey.expiresAt),
           expiresInMs: k.perKey.expiresAt.getTime() - Date.now() };
});
await step("limits-override-numeric-key", async () =>
  await concurrencyLimits.override(OWN, { concurrencyKey: 42, perKey: 2, ttl: 600 }));
await step("limits-reset-key", async () =>
  await concurrencyLimits.reset(OWN, { concurrencyKey: "user_1" }));
await step("limits-reset", async () => await concurrencyLimits.reset(OWN));
await step("limits-pause", async () => await concurrencyLimits.pause(SHARED));
await step("limits-resume", async () => await concurrencyLimits.resume(SHARED));
await step("limits-override-empty", async () => await concurrencyLimits.override(OWN, {}));
await step("limits-override-key-total", async () =>
  await concurrencyLimits.override(OWN, { concurrencyKey: "k", perKey: 1, total: 3 }));
await step("limits-retrieve-unknown", async () => await concurrencyLimits.retrieve("no-such-limit"));

await step("runs-by-queue", async () => {
  const echo = await tasks.trigger("test-echo", { n: 1 }, { delay: "1h" });
  const named = await tasks.trigger("test-echo", { n: 2 }, { delay: "1h", queue: "q1" });
  const ids = async (queue) => {
    const found = [];
    for await (const run of runs.list({ queue })) found.push(run.id);
    return found;
  };
  return {
    echo: echo.id,
    named: named.id,
    byTask: await ids({ type: "task", name: "test-echo" }),
    byCustom: await ids({ type: "custom", name: "q1" }),
    both: (await ids([{ type: "task", name: "test-echo" }, { type: "custom", name: "q1" }])).sort(),
  };
});
