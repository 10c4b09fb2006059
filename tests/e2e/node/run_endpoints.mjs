// The run endpoints the SDK calls besides trigger/retrieve: the metadata manager's flush and
// refresh (GET|PUT /api/v1/runs/{id}/metadata), tags (POST /api/v1/runs/{id}/tags), the
// execution result (GET /api/v1/runs/{id}/result) and idempotencyKeys.reset.
import { apiClientManager } from "@trigger.dev/core/v3";
import { StandardMetadataManager } from "@trigger.dev/core/v3/workers";
import { idempotencyKeys } from "@trigger.dev/sdk";
import { completed, retrieveUntil, runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const client = apiClientManager.clientOrThrow();

// A delayed run is not finished, so its metadata may change.
const delayed = await step("trigger-delayed", () =>
  tasks.trigger("hello-world", { name: "Meta" }, { delay: "1h", metadata: { stage: "new" } }),
);
if (delayed) {
  await step("metadata-flush", async () => {
    const manager = new StandardMetadataManager(client);
    manager.runId = delayed.id;
    await manager.refresh(); // GET: the trigger's metadata
    const before = structuredClone(manager.current());
    manager.set("stage", "running").set("progress", { done: 0 }).increment("count", 3);
    manager.set("$.progress.done", 2);
    manager.append("log", "a").append("log", "b").append("log", "c").remove("log", "b");
    manager.del("temporary");
    await manager.flush(); // PUT with the operations
    await manager.refresh();
    return { before, after: manager.current() };
  });
  await step("metadata-replace", async () =>
    (await client.updateRunMetadata(delayed.id, { metadata: { replaced: true } })).metadata,
  );
  await step("tags-add", async () => {
    const first = await client.addTags(delayed.id, { tags: ["b-tag", "", "a-tag"] });
    const again = await client.addTags(delayed.id, { tags: "a-tag" });
    const run = await runs.retrieve(delayed.id);
    return { first: first.message, again: again.message, tags: run.tags };
  });
  await step("tags-over-limit", () =>
    client.addTags(delayed.id, { tags: Array.from({ length: 9 }, (_, i) => `t${i}`) }),
  );
  await step("result-of-unfinished", async () => (await client.getRunResult(delayed.id)) ?? null);
  await runs.cancel(delayed.id);
  // Within an hour of finishing, a run's metadata may still change (as Trigger.dev).
  await step("metadata-after-finish", async () =>
    (await client.updateRunMetadata(delayed.id, {
      operations: [{ type: "set", key: "late", value: 1 }],
    })).metadata,
  );
  await step("result-of-canceled", () => client.getRunResult(delayed.id));
}

// A run that finished more than an hour ago (the test aged it): refused.
if (process.env.E2E_OLD_RUN_ID) {
  await step("metadata-long-after-finish", () =>
    client.updateRunMetadata(process.env.E2E_OLD_RUN_ID, {
      operations: [{ type: "set", key: "late", value: 1 }],
    }),
  );
}

const done = await step("trigger-completing", () => tasks.trigger("hello-world", { name: "Res" }));
if (done) {
  await retrieveUntil(done.id, completed);
  await step("result-of-completed", () => client.getRunResult(done.id));
}

// idempotencyKeys.reset: the next trigger with the key makes a new run.
const key = await idempotencyKeys.create(unique("reset"), { scope: "global" });
await step("trigger-keyed", () =>
  tasks.trigger("hello-world", { name: "Key" }, { idempotencyKey: key, delay: "1h" }),
);
await step("trigger-keyed-again", () =>
  tasks.trigger("hello-world", { name: "Key" }, { idempotencyKey: key, delay: "1h" }),
);
await step("reset", () => idempotencyKeys.reset("hello-world", key));
await step("trigger-after-reset", () =>
  tasks.trigger("hello-world", { name: "Key" }, { idempotencyKey: key, delay: "1h" }),
);
await step("reset-unknown", () => idempotencyKeys.reset("hello-world", "f".repeat(64)));

// idempotencyKeyTTL: the key stops deduplicating once it expires.
const ttlKey = await idempotencyKeys.create(unique("ttl"), { scope: "global" });
const options = { idempotencyKey: ttlKey, idempotencyKeyTTL: "1s", delay: "1h" };
await step("ttl-first", () => tasks.trigger("hello-world", {}, options));
await step("ttl-within", () => tasks.trigger("hello-world", {}, options));
await new Promise((resolve) => setTimeout(resolve, 1500));
await step("ttl-after", () => tasks.trigger("hello-world", {}, options));
